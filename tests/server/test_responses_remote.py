"""`v1/responses` for a remote engine's model: the real `openai` client against the server, which runs
each response as a chat completion at a fake OpenAI-compatible engine on loopback (one that, like
Ollama or older vLLM, has no `/v1/responses`). The engine's answers depend on what it was sent, so the
tests see the conversation, instructions, tools and format the engine really read."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel
from tornado import web
from tornado.iostream import StreamClosedError

from tests.support.fake_engine import ChatStreamHandler, chat_chunk, closed_port, serve_tornado
from tests.support.tools import WEATHER_PARAMETERS

from .conftest import TINY
from .test_errors import assert_openai_error
from .test_remote_peers import SecondServer

KEY = "sk-responses-SECRET-41d7"
KEY_ENV = "FOUNDRY_TEST_RESPONSES_ENGINE_KEY"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
TOOL = {"type": "function", "name": "get_weather", "parameters": WEATHER_PARAMETERS}  # for the tiny model
CALL_ARGUMENTS = '{"city": "Paris"}'


class Pick(BaseModel):
    pick: Literal["red", "blue"]


class Engine:
    """What the fake engine was sent."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.port = 0
        self.left = asyncio.Event()  # the server closed a stream before its end


def _answer(body: dict) -> tuple[str, list[dict], str]:
    """Text, tool calls and finish reason, from what the engine was sent."""
    messages = body["messages"]
    last = messages[-1]
    if body["model"] == "short":
        return "cut short", [], "length"
    if body["model"] == "slow":
        return " ".join(["word"] * 200), [], "stop"
    if body.get("response_format", {}).get("type") == "json_schema":
        return '{"pick": "blue"}', [], "stop"
    if body["model"] == "whole-calls":
        cities = ("Paris", "Oslo")
        calls = [
            {
                "id": f"call_{c}",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": c}},
            }
            for c in cities
        ]
        return "", calls, "tool_calls"
    if body.get("tools") and last["role"] == "user":
        call = {
            "id": "call_fake1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": CALL_ARGUMENTS},
        }
        return "", [call], "tool_calls"  # fmt: skip
    if last["role"] == "tool":
        return f"The tool said: {last['content']}", [], "stop"
    turns = sum(m["role"] == "user" for m in messages)
    return f"Turn {turns}: you said {last['content']}", [], "stop"


def _usage(body: dict, text: str) -> dict:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    completion = len(text.split()) or 1
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 1},
    }


class Chat(ChatStreamHandler):
    def initialize(self, engine: Engine) -> None:
        self.engine = engine

    async def post(self) -> None:
        self.engine.auth.append(self.request.headers.get("Authorization"))
        if self.request.headers.get("Authorization") != f"Bearer {KEY}":
            self.set_status(401)
            self.finish(
                {"error": {"message": "Incorrect API key", "type": "invalid_request_error", "code": None}}
            )
            return
        body = json.loads(self.request.body)
        self.engine.requests.append(body)
        model = body["model"]
        if model == "broken":
            self.set_status(500)
            self.finish({"error": {"message": "CUDA out of memory", "type": "server_error", "code": None}})
            return
        if model == "busy":
            self.set_status(429)
            self.set_header("Retry-After", "9")
            error = {"message": "Slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}
            self.finish({"error": error})
            return
        text, calls, finish = _answer(body)
        if not body.get("stream"):
            message = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            self.finish({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
                         "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                         "usage": _usage(body, text)})  # fmt: skip
            return
        self.set_header("Content-Type", "text/event-stream")
        await self.send_event(chat_chunk(model, {"role": "assistant", "content": ""}))
        words = text.split(" ")
        for i, word in enumerate(words):
            if model == "slow":
                await asyncio.sleep(0.05)
            try:
                await self.send_event(chat_chunk(model, {"content": word if i == 0 else " " + word}))
            except StreamClosedError:
                self.engine.left.set()
                return
        if model == "fails-mid":
            await self.send_event({"error": {"message": "the engine lost its GPU", "code": "gpu_lost"}})
            self.finish()
            return
        if model == "whole-calls":  # as some Ollama versions: every call whole, in one chunk, no index
            await self.send_event(chat_chunk(model, {"tool_calls": calls}))
            calls = []
        for i, call in enumerate(calls):  # the arguments in two pieces, as OpenAI and vLLM stream them
            cut = len(call["function"]["arguments"]) // 2
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            first = {**call, "function": {"name": name, "arguments": arguments[:cut]}}
            await self.send_event(chat_chunk(model, {"tool_calls": [{"index": i, **first}]}))
            rest = {"index": i, "function": {"arguments": arguments[cut:]}}
            await self.send_event(chat_chunk(model, {"tool_calls": [rest]}))
        await self.end_chat_stream(body, finish, _usage(body, text))


class Models(web.RequestHandler):
    def get(self) -> None:
        self.finish({"object": "list", "data": [{"id": "echo", "object": "model", "created": 1}]})


@pytest.fixture
def engine(jp_asyncio_loop) -> Iterator[Engine]:
    fake = Engine()
    handlers = [(r"/v1/models", Models), (r"/v1/chat/completions", Chat, {"engine": fake})]
    with serve_tornado(jp_asyncio_loop, handlers) as port:  # no /v1/responses: the server must not need it
        fake.port = port
        yield fake


@pytest.fixture
def foundry_config(engine: Engine, monkeypatch) -> dict:
    monkeypatch.setenv(KEY_ENV, KEY)
    url = f"http://127.0.0.1:{engine.port}/v1"
    return {
        "remote_engines": [
            {"name": "fake", "base_url": url, "api_key_env": KEY_ENV, "aliases": {"echoes": "echo"}},
            {"name": "narrow", "base_url": url, "api_key_env": KEY_ENV, "max_in_flight": 1},
            {"name": "down", "base_url": f"http://127.0.0.1:{closed_port()}/v1", "list_timeout": 1},
        ]
    }


async def test_create_runs_as_a_chat_completion_at_the_engine(client, engine):
    answer = await client.responses.create(
        model="fake/echo", input="Hello there", instructions="Be brief.", max_output_tokens=20, temperature=0
    )
    assert answer.status == "completed" and answer.model == "fake/echo"
    assert answer.output_text == "Turn 1: you said Hello there"
    [message] = answer.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert answer.usage.input_tokens == 4 and answer.usage.output_tokens == 6  # words, in the fake
    assert answer.usage.total_tokens == 10 and answer.usage.input_tokens_details.cached_tokens == 1

    sent = engine.requests[-1]
    assert sent["model"] == "echo" and sent["stream"] is False
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]
    assert sent["max_tokens"] == 20 and sent["temperature"] == 0 and "max_completion_tokens" not in sent
    assert "ttl" not in sent and "ep" not in sent
    assert engine.auth[-1] == f"Bearer {KEY}"  # the engine's key, not the caller's Jupyter token

    again = await client.responses.retrieve(answer.id)
    assert again.model_dump() == answer.model_dump()


async def test_streamed_response_has_openais_events_and_usage(client, engine):
    events = [
        event
        async for event in await client.responses.create(model="echoes", input="one two three", stream=True)
    ]
    kinds = [event.type for event in events]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert len(deltas) > 1  # the engine's pieces come through as they arrive
    final = events[-1].response
    assert "".join(deltas) == final.output_text == "Turn 1: you said one two three"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.usage.input_tokens == 3 and final.model == "echoes"
    sent = engine.requests[-1]
    assert sent["model"] == "echo" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}

    async with client.responses.stream(model="fake/echo", input="again") as stream:
        streamed = await stream.get_final_response()
    assert streamed.output_text == "Turn 1: you said again"
    assert (await client.responses.retrieve(streamed.id)).output_text == streamed.output_text


async def test_a_chained_request_sends_the_stored_conversation(client, engine):
    first = await client.responses.create(model="fake/echo", input="Name a colour.", instructions="Be brief.")
    second = await client.responses.create(model="fake/echo", input="Another.", previous_response_id=first.id)
    assert second.output_text == "Turn 2: you said Another."
    assert engine.requests[-1]["messages"] == [  # instructions are not carried over, as OpenAI does
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "Another."},
    ]
    events = [
        event
        async for event in await client.responses.create(
            model="fake/echo", input="And one more.", previous_response_id=second.id, stream=True
        )
    ]
    assert events[-1].response.output_text == "Turn 3: you said And one more."
    items = await client.responses.input_items.list(events[-1].response.id, order="asc")
    assert [(i.type, i.role) for i in items.data] == [("message", "user"), ("message", "assistant")] * 2 + [
        ("message", "user")
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_function_call_round_trip(client, engine, stream):
    if stream:
        async with client.responses.stream(
            model="fake/echo", input="Weather in Paris?", tools=[WEATHER]
        ) as s:
            kinds = [event.type async for event in s]
            answer = await s.get_final_response()
        assert "response.function_call_arguments.done" in kinds and kinds[-1] == "response.completed"
    else:
        answer = await client.responses.create(model="fake/echo", input="Weather in Paris?", tools=[WEATHER])
    assert answer.status == "completed"
    [call] = answer.output  # no empty message beside the call
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_fake1"
    assert call.arguments == CALL_ARGUMENTS  # whole, though the engine streamed it in pieces
    sent = engine.requests[-1]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {k: WEATHER[k] for k in ("name", "description", "parameters")},
        }
    ]

    result = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}
    follow = await client.responses.create(
        model="fake/echo", input=[result], previous_response_id=answer.id, tools=[WEATHER], stream=False
    )
    assert follow.output_text == "The tool said: Sunny, 21 C"
    messages = engine.requests[-1]["messages"]
    assert messages[1]["role"] == "assistant" and messages[1]["tool_calls"][0]["id"] == "call_fake1"
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": CALL_ARGUMENTS}
    assert messages[2] == {"role": "tool", "tool_call_id": "call_fake1", "content": "Sunny, 21 C"}


async def test_calls_sent_whole_without_an_index_stay_apart(client):
    for stream in (False, True):
        if stream:
            events = await client.responses.create(
                model="fake/whole-calls", input="Paris and Oslo?", tools=[WEATHER], stream=True
            )
            answer = [event async for event in events][-1].response
        else:
            answer = await client.responses.create(
                model="fake/whole-calls", input="Paris and Oslo?", tools=[WEATHER]
            )
        assert [(c.type, c.call_id) for c in answer.output] == [
            ("function_call", "call_Paris"),
            ("function_call", "call_Oslo"),
        ]
        # the arguments came as JSON objects, not text: passed on as text, as OpenAI's API has them
        assert [json.loads(c.arguments) for c in answer.output] == [{"city": "Paris"}, {"city": "Oslo"}]


async def test_text_format_and_a_cut_answer(client, engine):
    parsed = await client.responses.parse(model="fake/echo", input="Red or blue?", text_format=Pick)
    assert parsed.output_parsed.pick == "blue"
    sent = engine.requests[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Pick"
    assert sent["json_schema"]["schema"]["properties"]["pick"]["enum"] == ["red", "blue"]

    short = await client.responses.create(
        model="fake/short", input="Tell me everything.", max_output_tokens=2
    )
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"


async def test_engine_failures_are_openai_shaped_errors(http, client, engine, server):
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    loggers = [
        logging.getLogger(),
        server.log,
        logging.getLogger("foundry_jupyter"),
        logging.getLogger("httpx"),
    ]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    texts = []
    try:
        for stream in (False, True):
            answer = await http.post(
                "v1/responses", json={"model": "fake/broken", "input": "hi", "stream": stream}
            )
            error = assert_openai_error(answer, 502, code="engine_error")
            assert "'fake'" in error["message"] and "CUDA out of memory" in error["message"]
            texts.append(answer.text)

            busy = await http.post(
                "v1/responses", json={"model": "fake/busy", "input": "hi", "stream": stream}
            )
            assert_openai_error(busy, 429, code="rate_limit_exceeded")
            assert busy.headers["Retry-After"] == "9"
            texts.append(busy.text)

            down = await http.post("v1/responses", json={"model": "down/m", "input": "hi", "stream": stream})
            assert_openai_error(down, 503, code="engine_unavailable")
            texts.append(down.text)

        with pytest.raises(openai.APIStatusError) as info:
            await client.responses.create(model="fake/broken", input="hi")
        assert info.value.status_code == 502 and info.value.code == "engine_error"

        # failing mid-stream: the text so far, an error event, then response.failed, stored as failed
        events = []
        async for event in await client.responses.create(model="fake/fails-mid", input="a b c", stream=True):
            events.append(event)
        kinds = [event.type for event in events]
        assert kinds[-3:] == ["response.output_item.done", "error", "response.failed"]
        assert events[-2].code == "gpu_lost" and "lost its GPU" in events[-2].message
        failed = events[-1].response
        assert failed.status == "failed" and failed.error.code == "gpu_lost"
        assert failed.output[0].status == "incomplete" and failed.output_text.startswith("Turn 1")
        assert (await client.responses.retrieve(failed.id)).status == "failed"
        texts.append(json.dumps([event.model_dump() for event in events]))
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
    assert engine.auth.count(f"Bearer {KEY}") >= 6  # the key went to the engine, and only there
    assert KEY not in "\n".join(texts) + log.getvalue()


async def test_a_client_that_leaves_a_stream_closes_the_upstream_request(base_url, token, engine, http):
    async with openai.AsyncOpenAI(base_url=base_url + "v1", api_key=token, max_retries=0) as leaving:
        stream = await leaving.responses.create(model="narrow/slow", input="hi", stream=True)
        async for event in stream:
            if event.type == "response.output_text.delta":
                break
        await stream.close()
    await asyncio.wait_for(engine.left.wait(), 5)  # long before the answer's end
    # the engine takes one request at a time from this server: a place held on would be a 429
    answer = await http.post("v1/responses", json={"model": "narrow/echo", "input": "still there?"})
    assert answer.status_code == 200 and answer.json()["output"][0]["content"][0]["text"].startswith("Turn 1")


@pytest.fixture
def second_server(tmp_path: Path, tiny_cache_dir: Path):
    """A second foundry-jupyter server, a real engine with chat completions for the tiny model."""
    cache = tmp_path / "second" / "cache" / "models"
    shutil.copytree(tiny_cache_dir, cache)
    server = SecondServer(tmp_path / "second", cache).start()
    yield server
    server.stop()


async def test_a_real_engine_answers_as_the_same_model_does_here(http, client, second_server, monkeypatch):
    monkeypatch.setenv("SECOND_SERVER_TOKEN", second_server.token)
    body = {"name": "lab2", "baseUrl": second_server.url, "apiKeyEnv": "SECOND_SERVER_TOKEN"}
    assert (await http.post("openai/register", json=body)).status_code == 200
    greedy = {"input": "Name three colours.", "max_output_tokens": 8, "temperature": 0}

    local = await client.responses.create(model=TINY, **greedy)
    remote = await client.responses.create(model=f"lab2/{TINY}", **greedy)
    assert remote.model == f"lab2/{TINY}" and remote.output_text == local.output_text
    assert remote.status == local.status == "incomplete"  # the budget ended both
    assert (remote.usage.input_tokens, remote.usage.output_tokens) == (
        local.usage.input_tokens,
        local.usage.output_tokens,
    )
    more = {"input": "More.", "max_output_tokens": 4, "temperature": 0}
    events = await client.responses.create(
        model=f"lab2/{TINY}", previous_response_id=remote.id, stream=True, **more
    )
    chained = [event async for event in events][-1].response
    local_chained = await client.responses.create(model=TINY, previous_response_id=local.id, **more)
    assert chained.output_text == local_chained.output_text
    assert chained.usage.input_tokens == local_chained.usage.input_tokens
    # the engine read the turn it had just answered as the prefix it holds: its reuse is passed on
    assert chained.usage.input_tokens_details.cached_tokens >= remote.usage.input_tokens
    assert chained.usage.input_tokens_details.cached_tokens == (
        local_chained.usage.input_tokens_details.cached_tokens
    )

    forced = {
        "input": "Weather in Paris?",
        "tools": [TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
    }
    local_call = await client.responses.create(model=TINY, max_output_tokens=80, temperature=0, **forced)
    remote_call = await client.responses.create(
        model=f"lab2/{TINY}", max_output_tokens=80, temperature=0, **forced
    )
    [call] = remote_call.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == local_call.output[0].arguments
    jsonschema.validate(json.loads(call.arguments), WEATHER_PARAMETERS)
