"""Remote engines through the server, against a small OpenAI-compatible fake engine on loopback that can
misbehave on demand: engine down, slow first byte, cut mid-stream, invalid JSON, 429 with Retry-After,
401 from a wrong key, a client that leaves, the in-flight limit. Also: the key never shows."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import struct
import time
from collections.abc import Iterator

import openai
import pytest
from pydantic import SecretStr
from tornado.iostream import StreamClosedError

from tests.support.fake_engine import ChatStreamHandler, chat_chunk, closed_port, serve_tornado

KEY = "sk-planted-SECRET-7f3a9c"
KEY_ENV = "FOUNDRY_TEST_ENGINE_KEY"
MSG = [{"role": "user", "content": "hi"}]
MODELS = [
    "echo", "slow-first", "cut", "bad-json", "rate-limited", "refuses", "hold", "org/with-slash", "reset-once"
]  # fmt: skip


class FakeEngine:
    """What the fake engine saw, and events tests wait on."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.hold_closed = asyncio.Event()
        self.hold_started = asyncio.Event()
        self.resets = 0
        self.port = 0


class _Base(ChatStreamHandler):
    def initialize(self, fake: FakeEngine) -> None:
        self.fake = fake

    def prepare(self) -> None:
        auth = self.request.headers.get("Authorization")
        self.fake.auth.append(auth)
        if auth != f"Bearer {KEY}":
            self.set_status(401)
            self.finish({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                   "param": None, "code": "invalid_api_key"}})  # fmt: skip


class ModelsList(_Base):
    def get(self) -> None:
        self.finish({"object": "list", "data": [{"id": m, "object": "model", "created": 5} for m in MODELS]})


class Chat(_Base):
    async def post(self) -> None:
        body = json.loads(self.request.body)
        self.fake.requests.append(body)
        model = body["model"]
        if model == "reset-once" and not self.fake.resets:
            # As an engine closing a kept-alive connection just as a request arrives: a reset, no answer.
            self.fake.resets += 1
            sock = self.request.connection.stream.socket
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.request.connection.stream.close()
            return
        if model == "rate-limited":
            self.set_status(429)
            self.set_header("Retry-After", "7")
            self.finish({"error": {"message": "Slow down", "type": "rate_limit_error", "param": None,
                                   "code": "rate_limit_exceeded"}})  # fmt: skip
            return
        if model == "refuses":
            self.set_status(400)
            error = {"message": "temperature must be at most 2", "type": "invalid_request_error"}
            self.finish({"error": {**error, "param": "temperature", "code": "out_of_range"}})
            return
        if model == "slow-first":
            await asyncio.sleep(3)
        if model == "bad-json" and not body.get("stream"):
            self.set_header("Content-Type", "application/json")
            self.finish("this is not json")
            return
        if not body.get("stream"):
            self.finish(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Hello there"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                }
            )
            return
        self.set_header("Content-Type", "text/event-stream")
        await self.send_event(chat_chunk(model, {"content": "Hel"}))
        if model == "cut":
            self.request.connection.stream.close()  # the engine dies mid-answer
            return
        if model == "bad-json":
            self.write("data: {not json\n\n")
            await self.flush()
            return
        if model == "hold":
            self.fake.hold_started.set()
            try:
                for _ in range(300):
                    await asyncio.sleep(0.05)
                    self.write(": keep-alive\n\n")
                    await self.flush()
            except StreamClosedError:
                self.fake.hold_closed.set()
            return
        self.write(": keep-alive\n\n")
        await self.send_event(chat_chunk(model, {"content": "lo"}))
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        await self.end_chat_stream(body, "stop", usage)

    def on_connection_close(self) -> None:
        self.fake.hold_closed.set()


class Completions(_Base):
    async def post(self) -> None:
        body = json.loads(self.request.body)
        self.fake.requests.append(body)
        self.finish({"id": "cmpl-fake", "object": "text_completion", "created": 1, "model": body["model"],
                     "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})  # fmt: skip


class Embeddings(_Base):
    async def post(self) -> None:
        body = json.loads(self.request.body)
        self.fake.requests.append(body)
        if body["model"] == "rate-limited":
            self.set_status(429)
            self.set_header("Retry-After", "7")
            self.finish({"error": {"message": "Slow down", "type": "rate_limit_error", "code": None}})
            return
        if body["model"] == "slow-first":
            await asyncio.sleep(3)
        self.finish({"object": "list", "model": body["model"],
                     "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
                     "usage": {"prompt_tokens": 2, "total_tokens": 2}})  # fmt: skip


@pytest.fixture
def fake_engine(jp_asyncio_loop) -> Iterator[FakeEngine]:
    fake = FakeEngine()
    handlers = [
        (r"/v1/models", ModelsList, {"fake": fake}),
        (r"/v1/chat/completions", Chat, {"fake": fake}),
        (r"/v1/completions", Completions, {"fake": fake}),
        (r"/v1/embeddings", Embeddings, {"fake": fake}),
    ]
    with serve_tornado(jp_asyncio_loop, handlers) as port:
        fake.port = port
        yield fake


@pytest.fixture
def foundry_config(fake_engine: FakeEngine, monkeypatch) -> dict:
    monkeypatch.setenv(KEY_ENV, KEY)
    url = f"http://127.0.0.1:{fake_engine.port}"
    return {
        "remote_engines": [
            {"name": "fake", "base_url": url + "/v1", "api_key_env": KEY_ENV, "aliases": {"echoes": "echo"}},
            {
                "name": "impatient",
                "base_url": url,
                "api_key_env": KEY_ENV,
                "first_byte_timeout": 0.5,
                "idle_timeout": 0.5,
            },
            {"name": "wrongkey", "base_url": url, "api_key": SecretStr("sk-wrong")},
            {"name": "plainkey", "base_url": url, "api_key": "sk-plain"},  # left out: Jupyter would print it
            {"name": "narrow", "base_url": url, "api_key_env": KEY_ENV, "max_in_flight": 1},
            {"name": "down", "base_url": f"http://127.0.0.1:{closed_port()}/v1", "list_timeout": 1},
        ]
    }


async def test_models_are_listed_with_engine_health_and_latency(http, client):
    ids = [m.id for m in (await client.models.list()).data]
    assert "tiny-generic-cpu:1" in ids and "fake/echo" in ids and "fake/org/with-slash" in ids
    catalog = {row["id"]: row for row in (await http.get("foundry/list")).json()}
    row = catalog["fake/echo"]
    assert row["runtime"] == {"deviceType": "remote", "executionProvider": "fake"}
    assert row["health"] == "ok" and row["latencyMs"] >= 0 and row["engine"] == "fake"
    assert "wrongkey/echo" not in catalog  # its engine refused the key: no list
    engines = {e["name"]: e for e in (await http.get("engines")).json()["engines"]}
    assert engines["fake"]["health"] == "ok" and engines["fake"]["modelCount"] == len(MODELS)
    assert engines["wrongkey"]["health"] == "unauthorized"
    assert engines["down"]["health"] == "down" and engines["down"]["latencyMs"] is None
    assert "plainkey" not in engines  # its key was plain text in the config
    cache = {m["id"]: m for m in (await http.get("cache")).json()["models"]}
    assert cache["fake/echo"]["device"] == "remote" and cache["fake/echo"]["path"] is None
    resolved = (await http.get("foundry/resolve/fake/echo")).json()
    assert resolved["id"] == "fake/echo" and resolved["runtime"]["deviceType"] == "remote"
    assert (await client.models.retrieve("fake/org/with-slash")).owned_by == "fake"


async def test_chat_streams_through_with_usage_and_the_callers_model_name(client, fake_engine):
    stream = await client.chat.completions.create(
        model="fake/echo",
        messages=MSG,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ttl": 5},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert {c.model for c in chunks} == {"fake/echo"}
    assert chunks[-1].usage.total_tokens == 5
    sent = fake_engine.requests[-1]
    assert sent["model"] == "echo" and "ttl" not in sent  # renamed, our own fields dropped
    assert fake_engine.auth[-1] == f"Bearer {KEY}"  # the engine's key, never the Jupyter token


async def test_non_streaming_chat_and_completions(client):
    answer = await client.chat.completions.create(model="fake/echo", messages=MSG)
    assert answer.model == "fake/echo" and answer.choices[0].message.content == "Hello there"
    assert answer.usage.prompt_tokens == 3
    text = await client.completions.create(model="fake/echo", prompt="x")
    assert text.choices[0].text == "ok" and text.model == "fake/echo"


async def test_an_engine_that_is_down_is_a_503_naming_it(http):
    started = time.monotonic()
    answer = await http.post("v1/chat/completions", json={"model": "down/m", "messages": MSG})
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "engine_unavailable" and "'down'" in error["message"]
    assert time.monotonic() - started < 5


async def test_a_connection_reset_before_any_answer_is_retried(client, fake_engine):
    answer = await client.chat.completions.create(model="fake/reset-once", messages=MSG)
    assert answer.choices[0].message.content == "Hello there"
    assert fake_engine.resets == 1
    assert [r["model"] for r in fake_engine.requests].count("reset-once") == 2


async def test_no_first_byte_in_time_is_a_504(http):
    answer = await http.post("v1/chat/completions", json={"model": "impatient/slow-first", "messages": MSG})
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "engine_timeout"
    assert "'impatient'" in answer.json()["error"]["message"]


async def test_a_stream_cut_mid_way_ends_with_an_error_event(http):
    body = {"model": "fake/cut", "messages": MSG, "stream": True}
    answer = await http.post("v1/chat/completions", json=body)
    assert answer.status_code == 200
    events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Hel"
    assert json.loads(events[-1])["error"]["code"] == "engine_stream_broken"
    assert "[DONE]" not in events


async def test_invalid_json_from_the_engine_is_a_502(http):
    answer = await http.post("v1/chat/completions", json={"model": "fake/bad-json", "messages": MSG})
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "engine_bad_response"
    streamed = await http.post(
        "v1/chat/completions", json={"model": "fake/bad-json", "messages": MSG, "stream": True}
    )
    last = [line for line in streamed.text.splitlines() if line.startswith("data: ")][-1]
    assert json.loads(last[6:])["error"]["code"] == "engine_bad_response"


async def test_a_429_is_passed_on_with_retry_after(http, client):
    answer = await http.post("v1/chat/completions", json={"model": "fake/rate-limited", "messages": MSG})
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
    error = answer.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="fake/rate-limited", messages=MSG)


async def test_a_wrong_key_is_a_502_that_does_not_blame_the_callers_token(http, client):
    answer = await http.post("v1/chat/completions", json={"model": "wrongkey/echo", "messages": MSG})
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["code"] == "engine_auth_failed" and "sk-wrong" not in answer.text


async def test_other_engine_4xx_pass_on_in_openai_shape(http, client):
    answer = await http.post("v1/chat/completions", json={"model": "fake/refuses", "messages": MSG})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (
        "temperature",
        "out_of_range",
        "invalid_request_error",
    )
    assert "'fake'" in error["message"] and "at most 2" in error["message"]
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="fake/refuses", messages=MSG, stream=True)
    wrong = await http.post(
        "v1/chat/completions", json={"model": "fake/echo", "messages": MSG, "stream": "x"}
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "stream"


async def test_a_client_that_leaves_closes_the_upstream_request(base_url, token, fake_engine, http):
    import httpx

    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as leaver:
        body = {"model": "fake/hold", "messages": MSG, "stream": True}
        async with leaver.stream("POST", "v1/chat/completions", json=body) as answer:
            await asyncio.wait_for(fake_engine.hold_started.wait(), 10)
            async for _ in answer.aiter_lines():
                break
    await asyncio.wait_for(fake_engine.hold_closed.wait(), 10)
    # The slot it held is free again.
    answer = await http.post("v1/chat/completions", json={"model": "narrow/echo", "messages": MSG})
    assert answer.status_code == 200


async def test_the_in_flight_limit_answers_429_engine_busy(base_url, token, fake_engine, http):
    import httpx

    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as first:
        body = {"model": "narrow/hold", "messages": MSG, "stream": True}
        async with first.stream("POST", "v1/chat/completions", json=body):
            await asyncio.wait_for(fake_engine.hold_started.wait(), 10)
            busy = await http.post("v1/chat/completions", json={"model": "narrow/echo", "messages": MSG})
            assert busy.status_code == 429 and busy.json()["error"]["code"] == "engine_busy"
            assert busy.headers["Retry-After"] == "1"
            other = await http.post("v1/chat/completions", json={"model": "fake/echo", "messages": MSG})
            assert other.status_code == 200  # the limit is per engine


async def test_lifecycle_routes_say_there_is_nothing_to_load(http):
    load = (await http.get("openai/load/fake/echo", params={"ttl": 5})).json()
    assert load["status"] == "remote" and "nothing to load" in load["message"]
    unload = (await http.get("openai/unload/fake/echo")).json()
    assert unload["status"] == "not_loaded" and unload["engine"] == "fake"
    for answer in (
        await http.post("openai/download", json={"model": "fake/echo"}),
        await http.post("downloads", json={"model": "fake/echo"}),
        await http.delete("cache/fake/echo"),
        await http.post(
            "v1/chat/completions/tokenizer/encode/count", json={"model": "fake/echo", "messages": MSG}
        ),
    ):
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "remote_model", answer.text
    assert (await http.get("openai/loadedmodels")).json() == []


async def test_register_saves_the_engine_but_never_its_key(http, foundry_cache, fake_engine):
    url = f"http://127.0.0.1:{fake_engine.port}/v1"
    answer = await http.post("openai/register", json={"TypeName": "reg", "ModelName": "echo", "BaseUri": url})
    assert answer.status_code == 200 and answer.json()["engine"]["models"] == ["echo"]
    saved = json.loads((foundry_cache.parent / "engines.json").read_text())
    assert saved["engines"][0]["name"] == "reg"
    with_key = {"name": "reg2", "base_url": url, "api_key": KEY}
    assert (await http.post("openai/register", json=with_key)).status_code == 200
    assert KEY not in (foundry_cache.parent / "engines.json").read_text()
    chat = await http.post("v1/chat/completions", json={"model": "reg2/echo", "messages": MSG})
    assert chat.status_code == 200  # the key from the body is used, from memory
    bad = await http.post("openai/register", json={"TypeName": "x y", "BaseUri": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    clash = await http.post("openai/register", json={"name": "fake", "base_url": url})
    assert clash.status_code == 400 and clash.json()["error"]["code"] == "engine_configured"


async def test_the_key_is_never_in_any_answer_or_the_log(http, server, fake_engine):
    from foundry_jupyter.server.handlers import ROUTES

    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setLevel(logging.DEBUG)
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
    try:
        texts = []
        for route in ROUTES:
            if "get" not in route.operations or "{job_id}" in route.path:
                continue
            path = route.path.replace("{name}", "fake/echo")
            texts.append((await http.get(path)).text)
        for model in ("fake/echo", "wrongkey/echo", "down/echo", "fake/cut", "fake/rate-limited"):
            for stream in (False, True):
                body = {"model": model, "messages": MSG, "stream": stream}
                texts.append((await http.post("v1/chat/completions", json=body)).text)
        texts.append((await http.get("engines")).text)
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
    assert fake_engine.auth.count(f"Bearer {KEY}") > 3  # the key did travel, to the engine only
    everything = "\n".join(texts) + log.getvalue()
    assert KEY not in everything and "sk-wrong" not in everything
    assert '"hasKey": true' in texts[-1] and KEY_ENV in texts[-1]


async def test_the_kernels_service_backend_runs_a_remote_model_through_the_server(base_url, token):
    """What `%foundry run fake/echo` does in a kernel the server started."""
    import threading

    from foundry_jupyter.engine.types import GenerationParams
    from foundry_jupyter.kernel.backends import ServiceBackend

    def in_kernel() -> tuple:
        backend = ServiceBackend(base_url, token)
        try:
            info = backend.load("fake/echo")
            stream = backend.stream_chat("fake/echo", MSG, GenerationParams(max_tokens=5), threading.Event())
            deltas = list(stream.deltas)
            catalog = {row["id"]: row for row in backend.catalog()}
            by_alias = backend.load("echoes")
            aliased = list(backend.stream_chat("echoes", MSG, GenerationParams(), threading.Event()).deltas)
            assert (by_alias.id, "".join(d.text for d in aliased)) == ("fake/echo", "Hello")
            return info, deltas, catalog
        finally:
            backend.close()

    info, deltas, catalog = await asyncio.to_thread(in_kernel)
    assert (info.id, info.execution_provider) == ("fake/echo", "remote")
    assert "".join(d.text for d in deltas) == "Hello" and deltas[-1].usage.completion_tokens == 2
    assert catalog["fake/echo"]["health"] == "ok"


async def test_delete_forgets_a_registered_engine_but_not_a_configured_one(
    http, anon, base_url, token, foundry_cache, fake_engine
):
    url = f"http://127.0.0.1:{fake_engine.port}/v1"
    body = {"name": "gone", "base_url": url, "api_key_env": KEY_ENV}
    assert (await http.post("openai/register", json=body)).status_code == 200
    assert "gone/echo" in {m["id"] for m in (await http.get("v1/models")).json()["data"]}

    # A browser session (login cookie, no XSRF token) may not delete; the token in a header may.
    login = await anon.get(base_url.replace("/foundry/", "/api/status"), params={"token": token})
    assert login.status_code == 200 and anon.cookies
    refused = await anon.delete("engines/gone")
    assert refused.status_code == 403
    assert "gone" in (foundry_cache.parent / "engines.json").read_text()

    answer = await http.delete("engines/gone")
    assert answer.status_code == 200 and answer.json() == {"status": "removed", "engine": "gone"}
    assert "gone" not in (foundry_cache.parent / "engines.json").read_text()
    assert "gone/echo" not in {m["id"] for m in (await http.get("v1/models")).json()["data"]}
    assert "gone" not in {e["name"] for e in (await http.get("engines")).json()["engines"]}

    again = await http.delete("engines/gone")
    assert again.status_code == 404 and again.json()["error"]["code"] == "engine_not_found"
    configured = await http.delete("engines/fake")
    assert configured.status_code == 400
    error = configured.json()["error"]
    assert error["code"] == "engine_configured" and "FoundryApp.remote_engines" in error["message"]
    assert "fake" in {e["name"] for e in (await http.get("engines")).json()["engines"]}


async def test_embeddings_go_to_the_engine_with_the_same_limits_as_chat(http, client, fake_engine):
    answer = await client.embeddings.create(model="fake/echo", input="hi", encoding_format="float")
    assert answer.model == "fake/echo" and answer.data[0].embedding == [0.6, 0.8]
    assert answer.usage.total_tokens == 2
    assert fake_engine.requests[-1]["model"] == "echo" and fake_engine.auth[-1] == f"Bearer {KEY}"

    down = await http.post("v1/embeddings", json={"model": "down/e", "input": "hi"})
    assert down.status_code == 503 and "'down'" in down.json()["error"]["message"]
    slow = await http.post("v1/embeddings", json={"model": "impatient/slow-first", "input": "hi"})
    assert slow.status_code == 504 and slow.json()["error"]["code"] == "engine_timeout"
    limited = await http.post("v1/embeddings", json={"model": "fake/rate-limited", "input": "hi"})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    refused = await http.post("v1/embeddings", json={"model": "wrongkey/echo", "input": "hi"})
    assert refused.status_code == 502 and refused.json()["error"]["code"] == "engine_auth_failed"


async def test_an_engine_alias_stands_for_its_model_everywhere(http, client, fake_engine):
    answer = await client.chat.completions.create(model="echoes", messages=MSG)
    assert answer.model == "echoes" and answer.choices[0].message.content == "Hello there"
    assert fake_engine.requests[-1]["model"] == "echo"
    stream = await client.chat.completions.create(model="ECHOES", messages=MSG, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "Hello"
    assert fake_engine.requests[-1]["model"] == "echo"
    vectors = await client.embeddings.create(model="echoes", input="hi", encoding_format="float")
    assert vectors.model == "echoes" and fake_engine.requests[-1]["model"] == "echo"

    listed = {m["id"]: m for m in (await http.get("v1/models")).json()["data"]}
    assert listed["fake/echo"]["alias"] == "echoes" and listed["fake/cut"]["alias"] == "fake/cut"
    catalog = {row["id"]: row for row in (await http.get("foundry/list")).json()}
    assert catalog["fake/echo"]["alias"] == "echoes"
    assert (await http.get("foundry/resolve/echoes")).json()["id"] == "fake/echo"
    one = (await http.get("v1/models/echoes")).json()
    assert (one["id"], one["alias"]) == ("fake/echo", "echoes")
    assert (await http.get("openai/load/echoes")).json()["status"] == "remote"
    engines = {e["name"]: e for e in (await http.get("engines")).json()["engines"]}
    assert engines["fake"]["aliases"] == {"echoes": "echo"}


async def test_an_alias_a_local_model_answers_to_is_refused(http, client, foundry_cache, fake_engine):
    url = f"http://127.0.0.1:{fake_engine.port}/v1"
    for taken in ("tiny", "echoes"):  # a local alias; another engine's alias
        body = {"name": "clash", "base_url": url, "api_key_env": KEY_ENV, "aliases": {taken: "echo"}}
        answer = await http.post("openai/register", json=body)
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["code"] == "alias_conflict" and repr(taken) in error["message"]
    bad = await http.post("openai/register", json={"name": "b", "base_url": url, "aliases": {"a/b": "x"}})
    assert bad.status_code == 400 and "bad alias" in bad.json()["error"]["message"]

    # An engines file edited by hand (or a catalog that gained the alias later): neither side wins.
    saved = {
        "engines": [{"name": "clash", "base_url": url, "api_key_env": KEY_ENV, "aliases": {"tiny": "echo"}}]
    }
    (foundry_cache.parent / "engines.json").write_text(json.dumps(saved))
    for answer in (
        await http.post("v1/chat/completions", json={"model": "tiny", "messages": MSG}),
        await http.get("openai/load/tiny"),
        await http.get("foundry/resolve/tiny"),
    ):
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "alias_conflict", answer.text
        assert (
            "'tiny'" in answer.json()["error"]["message"] and "'clash'" in answer.json()["error"]["message"]
        )
    local = await client.chat.completions.create(model="tiny-generic-cpu:1", messages=MSG, max_tokens=2)
    assert local.model == "tiny-generic-cpu:1"
    remote = await client.chat.completions.create(model="clash/echo", messages=MSG)
    assert remote.model == "clash/echo"
