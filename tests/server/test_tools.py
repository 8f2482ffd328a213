"""Tool calling over the OpenAI routes: the real `openai.AsyncOpenAI` client against the tiny model."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.support.tools import ASK, WEATHER, WEATHER_PARAMETERS

from .conftest import TINY
from .test_errors import assert_openai_error

NO_ARGS = {"type": "function", "function": {"name": "get_time"}}
FORCED = {"type": "function", "function": {"name": "get_weather"}}


def assert_weather_call(call) -> None:
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMETERS)


async def test_forced_call_non_streaming_then_streaming_then_the_answer(client):
    common = {"model": TINY, "messages": ASK, "tools": [WEATHER, NO_ARGS], "max_tokens": 80, "temperature": 0}
    answer = await client.chat.completions.create(**common, tool_choice=FORCED)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert_weather_call(call)

    stream = await client.chat.completions.create(
        **common, tool_choice="required", parallel_tool_calls=False, stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    streamed = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or ()]
    assert len(streamed) == 1 and streamed[0].index == 0
    assert streamed[0].function.name in ("get_weather", "get_time")
    assert isinstance(json.loads(streamed[0].function.arguments), dict)
    assert not "".join(c.choices[0].delta.content or "" for c in chunks)

    # The client's own stream helper assembles the streamed call into a final message.
    async with client.chat.completions.stream(**common, tool_choice=FORCED) as helper:
        final = await helper.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    assert_weather_call(final.choices[0].message.tool_calls[0])
    assert final.choices[0].message.tool_calls[0].function.arguments == call.function.arguments

    # The call and its result go back into the history, as the openai client sends them.
    history = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    follow = await client.chat.completions.create(**{**common, "max_tokens": 8, "messages": history})
    assert follow.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert follow.usage.prompt_tokens > answer.usage.prompt_tokens


async def test_none_answers_text_and_calls_nothing(client):
    answer = await client.chat.completions.create(
        model=TINY, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=8, temperature=0
    )
    choice = answer.choices[0]
    assert choice.message.tool_calls is None and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"tools": [{"type": "function"}]}, "tools.0.function", "Missing"),
        ({"tools": [{"type": "retrieval", "function": {"name": "x"}}]}, "tools.0.type", "function"),
        (
            {"tools": [{"type": "function", "function": {"name": "no spaces"}}]},
            "tools.0.function.name",
            "pattern",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
            None,
            "object",
        ),
        ({"tools": [WEATHER, WEATHER]}, None, "more than once"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", "required"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "launch"}}},
            None,
            "launch",
        ),
        ({"tool_choice": "required"}, None, "at least one tool"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"required": 3}}}],
                "tool_choice": "required",
            },
            "tools",
            "parameters schema",
        ),
    ],
)
async def test_bad_tool_requests_get_a_clear_400(http, client, extra, param, words):
    body = {"model": TINY, "messages": ASK, **extra}
    error = assert_openai_error(await http.post("v1/chat/completions", json=body), 400, param=param)
    assert words in error["message"], error
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(**body)
