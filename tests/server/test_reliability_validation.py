"""Strict validation, as OpenAI's API does it: no coercion of wrong types, role-specific fields
required, bodies nested absurdly deep refused with a 400 (never a 500).

Absurd numbers: `max_tokens` must be an integer (`1e30` is a number with a fraction part in JSON's
eyes and is refused, as OpenAI does); an integer larger than the model's context is accepted and
bounded by the room left in the context, so the answer ends with `finish_reason: length`.
"""

from __future__ import annotations

import pytest

from .conftest import TINY
from .test_errors import assert_openai_error

MSG = [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize("depth", [3000, 100_000])
async def test_deeply_nested_json_is_a_400(http, depth):
    body = '{"model": "tiny", "messages": ' + "[" * depth + "]" * depth + "}"
    error = assert_openai_error(await http.post("v1/chat/completions", content=body), 400)
    assert "nested" in error["message"]


@pytest.mark.parametrize("body", ["null", "[]", '"text"', "5"])
async def test_a_body_that_is_not_an_object_is_a_400_saying_so(http, body):
    error = assert_openai_error(await http.post("v1/chat/completions", content=body), 400)
    assert "JSON object" in error["message"]


async def test_nesting_inside_a_tool_schema_is_bounded_too(http):
    schema: dict = {"type": "object"}
    for _ in range(100):  # 200 levels of objects
        schema = {"type": "object", "properties": {"a": schema}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    body = {"model": TINY, "messages": MSG, "tools": tools}
    error = assert_openai_error(await http.post("v1/chat/completions", json=body), 400)
    assert "nested" in error["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"max_tokens": 5.0}, "max_tokens"),
        ({"max_tokens": 1e30}, "max_tokens"),
        ({"temperature": "0.5"}, "temperature"),
        ({"seed": True}, "seed"),
        ({"stream_options": {"include_usage": "true"}}, "stream_options.include_usage"),
        ({"model": 7}, "model"),
        ({"stop": 5}, "stop"),
    ],
)
async def test_wrong_types_are_not_coerced(http, extra, param):
    body = {"model": TINY, "messages": MSG, **extra}
    assert_openai_error(await http.post("v1/chat/completions", json=body), 400, param=param)


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"role": "tool", "content": "42"}, "tool_call_id"),
        ({"role": "tool", "tool_call_id": "call_1"}, "content"),
        ({"role": "user"}, "content"),
        ({"role": "system", "content": None}, "content"),
        ({"role": "assistant"}, "content"),
        ({"role": "user", "content": "x", "tool_calls": []}, "tool_calls"),
        ({"role": "user", "content": 5}, "content"),
    ],
)
async def test_role_specific_fields(http, message, words):
    body = {"model": TINY, "messages": [*MSG, message]}
    error = assert_openai_error(await http.post("v1/chat/completions", json=body), 400)
    assert words in error["message"]


async def test_valid_role_shapes_are_served(http):
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "system", "content": "Be brief."},
        *MSG,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "assistant", "content": [{"type": "text", "text": "It is 42."}]},
        {"role": "user", "content": "Thanks", "name": "ann"},
    ]
    body = {"model": TINY, "messages": messages, "max_tokens": 3, "temperature": 0}
    response = await http.post("v1/chat/completions", json=body)
    assert response.status_code == 200, response.text


async def test_a_huge_integer_max_tokens_is_bounded_by_the_context(http):
    body = {"model": TINY, "messages": MSG, "max_tokens": 10**30, "temperature": 0}
    response = await http.post("v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["choices"][0]["finish_reason"] in ("length", "stop")
    assert answer["usage"]["total_tokens"] <= 1024


@pytest.mark.parametrize(
    "extra", [{"max_in_flight": "4"}, {"connect_timeout": True}, {"models": 5}, {"name": 7}]
)
async def test_an_engine_registration_is_validated_strictly_too(http, extra):
    body = {"name": "strict", "base_url": "http://127.0.0.1:9/v1", **extra}
    assert_openai_error(await http.post("openai/register", json=body), 400)


async def test_an_engine_registration_in_plain_json_types_is_accepted(http):
    body = {"name": "plain", "base_url": "http://127.0.0.1:9/v1", "models": ["a", "b"], "connect_timeout": 5}
    response = await http.post("openai/register", json=body)
    assert response.status_code == 200, response.text
    foundry_body = {"TypeName": "foundry", "ModelName": "a,b", "BaseUri": "http://127.0.0.1:9/v1"}
    assert (await http.post("openai/register", json=foundry_body)).status_code == 200
