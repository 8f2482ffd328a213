"""OpenAI's Responses API (`v1/responses`): the real `openai.AsyncOpenAI` client against the tiny model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.support.tools import WEATHER_PARAMETERS

from .conftest import LONG, TINY
from .test_errors import assert_openai_error

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": WEATHER_PARAMETERS,
}
FORCED = {"type": "function", "name": "get_weather"}
# A schema the tiny model's random weights complete within a few tokens (no free text).
CHOICE = {
    "type": "object",
    "properties": {"pick": {"enum": ["red", "blue"]}},
    "required": ["pick"],
    "additionalProperties": False,
}


class Pick(BaseModel):
    pick: Literal["red", "blue"]


GREEDY = {"model": TINY, "temperature": 0}

TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


async def test_create_answers_as_the_chat_path_and_is_retrievable(client):
    answer = await client.responses.create(
        **GREEDY, input="Name three colours.", instructions="Be brief.", max_output_tokens=12
    )
    assert answer.object == "response" and answer.id.startswith("resp_")
    assert answer.model == TINY and answer.store is True and answer.instructions == "Be brief."
    # the random weights never stop by themselves: the budget ends the answer
    assert answer.status == "incomplete" and answer.incomplete_details.reason == "max_output_tokens"
    [message] = answer.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.content[0].type == "output_text" and answer.output_text == message.content[0].text
    usage = answer.usage
    assert usage.output_tokens == 12 and usage.total_tokens == usage.input_tokens + usage.output_tokens

    chat = await client.chat.completions.create(
        **GREEDY,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name three colours."},
        ],
        max_tokens=12,
    )
    assert answer.output_text == chat.choices[0].message.content
    assert usage.input_tokens == chat.usage.prompt_tokens

    again = await client.responses.retrieve(answer.id)
    assert again.model_dump() == answer.model_dump()


async def test_a_chained_request_continues_the_held_conversation(client, http):
    first = await client.responses.create(**GREEDY, input="Name three colours.", max_output_tokens=12)
    second = await client.responses.create(
        **GREEDY, input="And three more.", previous_response_id=first.id, max_output_tokens=4
    )
    assert second.previous_response_id == first.id
    # the earlier turn was not read again: its prompt and answer came from the runner's held state
    cached = second.usage.input_tokens_details.cached_tokens
    assert first.usage.input_tokens <= cached < second.usage.input_tokens

    # the model read the same conversation a chat client would have sent
    history = [
        {"role": "user", "content": "Name three colours."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "And three more."},
    ]
    chat = await client.chat.completions.create(**GREEDY, messages=history, max_tokens=4)
    assert second.output_text == chat.choices[0].message.content
    assert second.usage.input_tokens == chat.usage.prompt_tokens

    # input_items: everything the response read, newest first by default
    items = await client.responses.input_items.list(second.id)
    assert [(i.type, i.role) for i in items.data] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items.data[0].content[0].type == "input_text"
    assert items.data[0].content[0].text == "And three more."
    assert items.data[1].id == first.output[0].id and items.data[1].content[0].text == first.output_text
    ascending = await client.responses.input_items.list(second.id, order="asc")
    assert [i.id for i in ascending.data] == [i.id for i in reversed(items.data)]
    # pages: limit and after, as the client's auto-pagination uses them
    page = await client.responses.input_items.list(second.id, limit=2)
    assert page.has_more is True and [i.id for i in page.data] == [i.id for i in items.data[:2]]
    paged = [item.id async for item in client.responses.input_items.list(second.id, limit=1)]
    assert paged == [i.id for i in items.data]
    raw = (await http.get(f"v1/responses/{second.id}/input_items", params={"after": items.data[0].id})).json()
    assert raw["object"] == "list" and raw["has_more"] is False
    assert raw["first_id"] == items.data[1].id and raw["last_id"] == items.data[2].id


async def test_instructions_are_not_carried_over_and_metadata_is_echoed(client):
    first = await client.responses.create(
        **GREEDY, input="Hi.", instructions="Answer in French.", max_output_tokens=3, metadata={"run": "7"}
    )
    assert first.metadata == {"run": "7"}
    second = await client.responses.create(
        **GREEDY, input="Again.", previous_response_id=first.id, max_output_tokens=3
    )
    assert second.instructions is None and second.metadata == {}
    history = [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "Again."},
    ]
    chat = await client.chat.completions.create(**GREEDY, messages=history, max_tokens=3)
    assert second.usage.input_tokens == chat.usage.prompt_tokens
    assert second.output_text == chat.choices[0].message.content


async def test_function_tool_call_and_its_output_in_the_next_turn(client):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    answer = await client.responses.create(
        **GREEDY, input=ask, tools=[WEATHER], tool_choice=FORCED, max_output_tokens=80
    )
    assert answer.status == "completed"
    [call] = answer.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    jsonschema.validate(json.loads(call.arguments), WEATHER_PARAMETERS)
    assert answer.tools[0].name == "get_weather" and answer.tool_choice.name == "get_weather"

    result = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}
    follow = await client.responses.create(
        **GREEDY, input=[result], previous_response_id=answer.id, tools=[WEATHER], max_output_tokens=4
    )
    assert follow.usage.input_tokens > answer.usage.input_tokens
    items = await client.responses.input_items.list(follow.id, order="asc")
    assert [i.type for i in items.data] == ["message", "function_call", "function_call_output"]
    assert items.data[1].call_id == call.call_id and items.data[2].output == "Sunny, 21 C"

    # items already in the chained conversation may not come again
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(
            **GREEDY, input=[call.model_dump(exclude_none=True), result], previous_response_id=answer.id
        )
    assert "Duplicate item" in info.value.message and info.value.param == "input"

    # a client keeping the state itself sends the same items back and gets the same answer
    manual = await client.responses.create(
        **GREEDY,
        input=[*ask, call.model_dump(exclude_none=True), result],
        tools=[WEATHER],
        max_output_tokens=4,
    )
    assert manual.output_text == follow.output_text


async def test_json_schema_text_format(client):
    fmt = {"type": "json_schema", "name": "pick", "schema": CHOICE, "strict": True}
    answer = await client.responses.create(
        **GREEDY, input="Red or blue?", text={"format": fmt}, max_output_tokens=40
    )
    assert answer.status == "completed"
    assert json.loads(answer.output_text)["pick"] in ("red", "blue")
    assert answer.text.format.type == "json_schema" and answer.text.format.name == "pick"

    parsed = await client.responses.parse(
        **GREEDY, input="Red or blue?", text_format=Pick, max_output_tokens=40
    )
    assert parsed.output_parsed.pick in ("red", "blue")

    obj = await client.responses.create(
        **GREEDY, input="Red or blue?", text={"format": {"type": "json_object"}}, max_output_tokens=40
    )
    assert obj.output_text.lstrip().startswith("{")


async def test_streamed_events_follow_openais_order(client):
    events = [
        event
        async for event in await client.responses.create(
            **GREEDY, input="Name three colours.", max_output_tokens=12, stream=True
        )
    ]
    kinds = [event.type for event in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 1
    expected = [*TEXT_EVENTS[:4], *["response.output_text.delta"] * deltas, *TEXT_EVENTS[5:]]
    assert kinds == [*expected, "response.incomplete"]  # the budget ended it
    assert [event.sequence_number for event in events] == list(range(len(events)))
    created, final = events[0].response, events[-1].response
    assert created.status == "in_progress" and created.output == [] and created.id == final.id
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == events[-3].part.text == final.output_text
    assert final.usage.output_tokens == 12

    plain = await client.responses.create(**GREEDY, input="Name three colours.", max_output_tokens=12)
    assert plain.output_text == text
    assert (await client.responses.retrieve(final.id)).output_text == text


async def test_stream_helper_final_response_with_text_and_with_a_tool(client):
    async with client.responses.stream(
        **GREEDY, input="Red or blue?", text_format=Pick, max_output_tokens=40
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[-1] == "response.completed" and final.status == "completed"
    assert final.output_parsed.pick in ("red", "blue")

    async with client.responses.stream(
        **GREEDY, input="Weather in Paris?", tools=[WEATHER], tool_choice="required", max_output_tokens=80
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    [call] = final.output
    assert call.type == "function_call" and call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER_PARAMETERS)


async def test_delete_and_store_false(client, http):
    answer = await client.responses.create(**GREEDY, input="hi", max_output_tokens=2)
    deleted = await http.delete(f"v1/responses/{answer.id}")
    assert deleted.json() == {"id": answer.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(answer.id)
    assert_openai_error(await http.delete(f"v1/responses/{answer.id}"), 404, code="not_found")
    assert_openai_error(await http.get(f"v1/responses/{answer.id}/input_items"), 404, code="not_found")

    unstored = await client.responses.create(**GREEDY, input="hi", max_output_tokens=2, store=False)
    assert unstored.store is False and unstored.output_text
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(**GREEDY, input="more", previous_response_id=unstored.id)
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"


class TestAStoreOfTwo:
    @pytest.fixture
    def foundry_config(self) -> dict:
        return {"responses_max_entries": 2, "responses_max_age": 60.0}

    async def test_the_least_recently_used_goes_then_the_expired(self, client, service):
        async def create(**extra) -> str:
            return (await client.responses.create(**GREEDY, input="hi", max_output_tokens=1, **extra)).id

        a, b = await create(), await create()
        await client.responses.retrieve(a)  # a is now the most recently used
        c = await create(previous_response_id=a)  # chaining uses a too
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(b)
        d = await create()
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(a)
        # c keeps the conversation of a, which is gone
        items = await client.responses.input_items.list(c, order="asc")
        assert [i.role for i in items.data] == ["user", "assistant", "user"]
        assert len(service.responses) == 2 and (await client.responses.retrieve(d)).id == d

        service.responses.max_age_s = 0.2
        await asyncio.sleep(0.3)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(a)
        assert len(service.responses) == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": TINY}, "input"),
        ({"model": TINY, "input": []}, "input"),
        ({"model": TINY, "input": 5}, "input"),
        ({"model": TINY, "input": "hi", "temperature": 3}, "temperature"),
        ({"model": TINY, "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": TINY, "input": [{"role": "robot", "content": "hi"}]}, "input.0.message.role"),
        (
            {
                "model": TINY,
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}],
            },
            "input.0.message.content",
        ),
        ({"model": TINY, "input": [{"type": "item_reference", "id": "msg_1"}]}, "input"),
        ({"model": TINY, "input": "hi", "tools": [{"type": "web_search"}]}, "tools"),
        ({"model": TINY, "input": "hi", "tool_choice": FORCED}, None),
        ({"model": TINY, "input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}}, None),
        ({"model": TINY, "input": "hi", "text": {"format": {"type": "xml"}}}, "text.format"),
        ({"model": TINY, "input": "hi", "background": True}, None),
        ({"model": TINY, "input": "hi", "truncation": "auto"}, None),
    ],
)
async def test_bad_requests_answer_400(http, body, param):
    error = assert_openai_error(await http.post("v1/responses", json=body), 400)
    if param is not None:
        assert error["param"] == param


async def test_other_errors_are_openai_shaped(http):
    assert_openai_error(
        await http.post("v1/responses", json={"model": "no-such-model", "input": "hi"}),
        404,
        code="model_not_found",
    )
    assert_openai_error(await http.get("v1/responses/resp_unknown"), 404, code="not_found")
    assert_openai_error(await http.delete("v1/responses/resp_unknown"), 404, code="not_found")
    answer = (await http.post("v1/responses", json={**GREEDY, "input": "hi", "max_output_tokens": 1})).json()
    items = f"v1/responses/{answer['id']}/input_items"
    assert_openai_error(await http.get(items, params={"limit": 0}), 400, param="limit")
    assert_openai_error(await http.get(items, params={"limit": 101}), 400, param="limit")
    assert_openai_error(await http.get(items, params={"order": "sideways"}), 400, param="order")
    assert_openai_error(await http.get(items, params={"after": "msg_unknown"}), 400, param="after")
    long_input = {**GREEDY, "input": "word " * 5000}
    assert_openai_error(await http.post("v1/responses", json=long_input), 400, code="context_length_exceeded")


@pytest.mark.long_model
async def test_a_runner_failure_mid_stream_ends_with_response_failed(http, service):
    body = {"model": LONG, "input": "hi", "max_output_tokens": 4000, "temperature": 0, "stream": True}
    events: list[dict] = []
    names: list[str] = []
    async with http.stream("POST", "v1/responses", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
            elif line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                if len(events) == 5:
                    os.kill(service.supervisor.get(LONG).pid, signal.SIGKILL)
    assert names == [event["type"] for event in events]
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == "runner_failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "runner_failed"
    # what came before the failure is kept, as an incomplete message
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text and failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"] == text
    stored = (await http.get(f"v1/responses/{failed['id']}")).json()
    assert stored["status"] == "failed"


@pytest.mark.long_model
async def test_a_client_that_leaves_stops_the_generation_and_nothing_is_stored(client, service):
    stream = await client.responses.create(
        model=LONG, input="hi", max_output_tokens=4000, temperature=0, stream=True
    )
    seen = []
    async for event in stream:
        seen.append(event)
        if len(seen) == 5:
            break
    await stream.close()
    for _ in range(200):  # the runner notices the closed connection and stops
        if service.supervisor.get(LONG).active == 0:
            break
        await asyncio.sleep(0.05)
    assert service.supervisor.get(LONG).active == 0
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(seen[0].response.id)
    answer = await client.responses.create(model=LONG, input="hi", max_output_tokens=2)
    assert answer.usage.output_tokens == 2
