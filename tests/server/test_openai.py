"""The OpenAI-compatible routes, driven by the real `openai.AsyncOpenAI` client against the tiny model."""

from __future__ import annotations

import json

import openai
import pytest

from .conftest import TINY

MSG = [{"role": "user", "content": "Tell me a story."}]


async def test_models_list_and_get_by_id_or_alias(client):
    models = await client.models.list()
    assert [m.id for m in models.data] == [TINY]
    assert models.data[0].object == "model"
    assert (await client.models.retrieve(TINY)).id == TINY
    assert (await client.models.retrieve("tiny")).id == TINY  # Foundry Local answers 404 for an alias
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("nope-model:1")
    assert info.value.body["code"] == "model_not_found"


async def test_chat_non_streaming_loads_on_request(client, http):
    assert (await http.get("openai/loadedmodels")).json() == []
    answer = await client.chat.completions.create(model="tiny", messages=MSG, max_tokens=8, temperature=0)
    assert answer.object == "chat.completion"
    assert answer.id.startswith("chatcmpl-")
    assert answer.model == TINY
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    usage = answer.usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert (await http.get("openai/loadedmodels")).json() == [TINY]


async def test_streaming_matches_non_streaming_and_reports_usage(client):
    params = {"model": TINY, "messages": MSG, "max_tokens": 12, "temperature": 0}
    whole = await client.chat.completions.create(**params)
    stream = await client.chat.completions.create(
        **params, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


async def test_stream_without_usage_and_raw_sse_framing(http):
    body = {"model": TINY, "messages": MSG, "max_tokens": 4, "stream": True}
    async with http.stream("POST", "v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(line.startswith("data: ") for line in lines)
    assert all("usage" not in e for e in events)
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


async def test_max_completion_tokens_and_seed(client):
    params = {"model": TINY, "messages": MSG, "max_completion_tokens": 3, "temperature": 1.0, "seed": 7}
    first = await client.chat.completions.create(**params)
    second = await client.chat.completions.create(**params)
    assert first.usage.completion_tokens <= 3
    assert first.choices[0].message.content == second.choices[0].message.content


async def test_default_budget_fits_the_context(client):
    # Foundry Local answers 400 when max_tokens is left out (its default 2048 exceeds a small context).
    answer = await client.chat.completions.create(model=TINY, messages=MSG, temperature=0, stop=["\n"])
    assert answer.choices[0].finish_reason in ("stop", "length")


async def test_multi_turn_system_and_content_parts(client):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again"},
    ]
    answer = await client.chat.completions.create(model=TINY, messages=messages, max_tokens=4)
    assert answer.usage.prompt_tokens > 10


async def test_json_object_response_format(client):
    answer = await client.chat.completions.create(
        model=TINY, messages=MSG, max_tokens=24, temperature=0, response_format={"type": "json_object"}
    )
    text = answer.choices[0].message.content
    if answer.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:  # a random-weight model may spend the budget inside the object; what it wrote is still JSON-ish
        assert text.lstrip().startswith("{")


async def test_prompt_over_the_context_is_400(client, http):
    huge = "story " * 5000
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": huge}], max_tokens=4
        )
    assert info.value.body["code"] == "context_length_exceeded"
    # streaming: the error comes before the stream starts, as a plain 400
    body = {"model": TINY, "messages": [{"role": "user", "content": huge}], "max_tokens": 4, "stream": True}
    response = await http.post("v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


async def test_legacy_completions(client):
    answer = await client.completions.create(
        model="tiny", prompt="Once upon a time", max_tokens=5, temperature=0
    )
    assert answer.object == "text_completion"
    assert answer.usage.completion_tokens <= 5
    stream = await client.completions.create(
        model="tiny", prompt="Once upon a time", max_tokens=5, temperature=0, stream=True
    )
    text = "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])
    assert text == answer.choices[0].text


async def test_token_count(http):
    body = {"model": "tiny", "messages": MSG}
    response = await http.post("v1/chat/completions/tokenizer/encode/count", json=body)
    assert response.status_code == 200
    count = response.json()["tokenCount"]
    longer = {"model": "tiny", "messages": [*MSG, {"role": "user", "content": "And another one, please."}]}
    more = (await http.post("v1/chat/completions/tokenizer/encode/count", json=longer)).json()["tokenCount"]
    assert 0 < count < more


async def test_unknown_fields_are_ignored(http):
    body = {"model": TINY, "messages": MSG, "max_tokens": 2, "frobnicate": True, "user": "me"}
    assert (await http.post("v1/chat/completions", json=body)).status_code == 200


async def test_json_schema_response_format(client):
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    answer = await client.chat.completions.create(
        model=TINY,
        messages=MSG,
        max_tokens=40,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}},
    )
    text = answer.choices[0].message.content
    if answer.choices[0].finish_reason == "stop":
        value = json.loads(text)
        assert set(value) == {"a"} and isinstance(value["a"], int)
    else:  # the budget ran out inside the object (random weights): still the object's beginning
        assert text.lstrip().startswith("{")


async def test_stop_strings_end_the_answer(client):
    params = {"model": TINY, "messages": MSG, "max_tokens": 20, "temperature": 0}
    full = (await client.chat.completions.create(**params)).choices[0].message.content
    assert len(full) > 8
    stop = full[5:8]
    answer = await client.chat.completions.create(**params, stop=[stop, "never-appears"])
    assert answer.choices[0].message.content == full[: full.find(stop)]
    assert answer.choices[0].finish_reason == "stop"
