"""Load, unload, TTL expiry, runner crashes and clients that leave."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import openai
import psutil
import pytest

from foundry_jupyter.errors import FoundryError
from tests.support.streams import last_event, stream_and_act

from .conftest import LONG, TINY, runner_processes

pytestmark = pytest.mark.usefixtures("each_transport")  # every test: unix socket, then TCP

MSG = [{"role": "user", "content": "Tell me a long story."}]


async def wait_until(predicate, *, timeout: float = 20.0, step: float = 0.1) -> bool:
    """Poll an async predicate; bounded so a broken feature fails instead of hanging."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(step)
    return False


def thread_niceness(pid: int) -> list[int]:
    """The nice value of each of a process's threads (field 19 of /proc/<pid>/task/<tid>/stat)."""
    values = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        values.append(int(stat.read_text().rsplit(")", 1)[1].split()[16]))
    return values


async def loaded_ids(http) -> list[str]:
    return (await http.get("openai/loadedmodels")).json()


async def test_load_unload_by_alias_and_id(http):
    first = (await http.get("openai/load/tiny?ttl=300")).json()
    assert first["status"] == "loaded" and first["id"] == TINY and first["ttlSeconds"] == 300
    assert first["executionProvider"]
    again = (await http.get(f"openai/load/{TINY}")).json()
    assert again["status"] == "already_loaded"
    assert await loaded_ids(http) == [TINY]
    [model] = (await http.get("loaded")).json()["models"]
    assert model["id"] == TINY and model["alias"] == "tiny" and model["ttlSeconds"] == 300
    assert model["memoryBytes"] > 1_000_000 and model["activeRequests"] == 0
    assert psutil.Process(model["pid"]).is_running()
    # every thread of the runner, onnxruntime's included, yields the CPU to the server
    assert set(thread_niceness(model["pid"])) == {min(19, os.nice(0) + 5)}
    assert 0 < model["ttlRemaining"] <= 300
    assert (await http.get(f"openai/unload/{TINY}")).json() == {"status": "unloaded", "id": TINY}
    assert (await http.get("openai/unload/tiny")).json() == {"status": "not_loaded", "id": TINY}
    assert await loaded_ids(http) == []
    assert (
        not psutil.pid_exists(model["pid"]) or psutil.Process(model["pid"]).status() == psutil.STATUS_ZOMBIE
    )


async def test_unloadall_stops_every_runner(http):
    await http.get("openai/load/tiny")
    assert len(runner_processes()) == 1
    answer = (await http.get("openai/unloadall")).json()
    assert answer == {"status": "unloaded", "models": [TINY]}
    assert await loaded_ids(http) == []
    assert runner_processes() == []


async def test_ttl_expiry_unloads_an_idle_model(http, client):
    loaded = (await http.get("openai/load/tiny?ttl=1")).json()
    assert loaded["ttlSeconds"] == 1
    assert await wait_until(lambda: _empty(http)), "model still loaded long after its 1 s TTL"
    # a request after expiry loads it again; its own `ttl` applies
    await client.chat.completions.create(model="tiny", messages=MSG, max_tokens=2, extra_body={"ttl": 1})
    assert await loaded_ids(http) == [TINY]
    assert await wait_until(lambda: _empty(http))


async def _empty(http) -> bool:
    """No model loaded and no runner process left."""
    return await loaded_ids(http) == [] and runner_processes() == []


async def test_per_request_ttl_and_never(http, client, service):
    await client.chat.completions.create(model="tiny", messages=MSG, max_tokens=2, extra_body={"ttl": 0})
    [model] = (await http.get("loaded")).json()["models"]
    assert model["ttlSeconds"] == 0 and model["ttlRemaining"] is None
    assert await service.supervisor.reap() == []


@pytest.mark.parametrize("foundry_config", [{"default_ttl": 1}])
async def test_configured_default_ttl(http, client, foundry_config):
    await client.chat.completions.create(model="tiny", messages=MSG, max_tokens=2)
    [model] = (await http.get("loaded")).json()["models"]
    assert model["ttlSeconds"] == 1
    assert await wait_until(lambda: _empty(http))


@pytest.mark.parametrize("foundry_config", [{"max_loaded_models": 1}])
async def test_max_loaded_models_evicts_the_idle_one(http, service, tiny_model_dir, foundry_config):
    await http.get("openai/load/tiny")
    first = service.supervisor.get(TINY)
    # a second model id for the same folder, as a registered model would be
    _runner, started = await service.supervisor.ensure("other:1", tiny_model_dir, alias="other")
    assert started and [r.model_id for r in service.supervisor.loaded()] == ["other:1"]
    assert not first.alive()
    await service.supervisor.unload("other:1")


@pytest.mark.long_model
async def test_busy_model_needs_force_to_unload(http, service):
    await http.get(f"openai/load/{LONG}")
    runner = service.supervisor.get(LONG)
    # a request the server holds open: the model is busy until it is read to the end or closed
    request = {"op": "chat", "messages": MSG, "params": {"max_tokens": 4000, "temperature": 0}}
    call = await service.supervisor.open(runner, request)
    busy = await http.get(f"openai/unload/{LONG}")
    assert busy.status_code == 409
    error = busy.json()["error"]
    assert error["code"] == "model_busy" and "force=true" in error["message"]
    forced = await http.get(f"openai/unload/{LONG}?force=true")
    assert forced.json() == {"status": "unloaded", "id": LONG}
    assert not runner.alive() and await loaded_ids(http) == []
    with pytest.raises(FoundryError, match="was unloaded"):
        while await call.next() is not None:
            pass
    assert runner.active == 0


@pytest.mark.long_model
async def test_runner_killed_mid_stream(http, client, service):
    stream = await client.chat.completions.create(
        model=LONG, messages=MSG, max_tokens=4000, temperature=0, stream=True
    )
    pieces = 0
    with pytest.raises(openai.APIError) as info:
        async for _chunk in stream:
            pieces += 1
            if pieces == 3:
                os.kill(service.supervisor.get(LONG).pid, signal.SIGKILL)
    assert "stopped unexpectedly" in str(info.value)
    assert pieces >= 3
    # the server keeps serving, and the next request starts a fresh runner
    status = await http.get("openai/status")
    assert status.status_code == 200
    answer = await client.chat.completions.create(model=LONG, messages=MSG, max_tokens=3)
    assert answer.usage.completion_tokens > 0
    assert len(runner_processes()) == 1


async def test_runner_killed_between_requests(client, service):
    await client.chat.completions.create(model="tiny", messages=MSG, max_tokens=2)
    pid = service.supervisor.get(TINY).pid
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(timeout=10)
    answer = await client.chat.completions.create(model="tiny", messages=MSG, max_tokens=2)
    assert answer.usage.completion_tokens > 0
    assert service.supervisor.get(TINY).pid != pid


@pytest.mark.long_model
async def test_error_event_is_the_last_event(http, service):
    body = {"model": LONG, "messages": MSG, "max_tokens": 4000, "temperature": 0, "stream": True}

    async def kill() -> None:
        os.kill(service.supervisor.get(LONG).pid, signal.SIGKILL)

    events = await stream_and_act(http, body, kill)
    last = last_event(events)
    assert last["error"]["code"] == "runner_failed" and last["error"]["type"] == "server_error"
    assert "data: [DONE]" not in events


@pytest.mark.long_model
async def test_client_disconnect_stops_generation(http, service):
    body = {"model": LONG, "messages": MSG, "max_tokens": 4000, "temperature": 0, "stream": True}
    async with http.stream("POST", "v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break  # leave after the first event
    runner = service.supervisor.get(LONG)

    async def stopped() -> bool:
        info = await service.supervisor.call(runner, {"op": "info"})
        return info["cancelled"] == 1 and info["active"] == 0

    assert await wait_until(stopped, timeout=20), "generation still running after its client left"
    assert runner.active == 0
    # the runner is fine and serves the next request
    response = await http.post("v1/chat/completions", json={**body, "stream": False, "max_tokens": 2})
    assert response.status_code == 200


@pytest.mark.long_model
async def test_non_streaming_client_disconnect_frees_the_runner(http, base_url, token, service):
    await http.get(f"openai/load/{LONG}")
    runner = service.supervisor.get(LONG)
    body = {"model": LONG, "messages": MSG, "max_tokens": 4000, "temperature": 0}
    request = asyncio.ensure_future(http.post("v1/chat/completions", json=body))

    async def busy() -> bool:
        return runner.active > 0

    assert await wait_until(busy, step=0.01)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request

    async def stopped() -> bool:
        info = await service.supervisor.call(runner, {"op": "info"})
        return info["cancelled"] == 1 and info["active"] == 0

    assert await wait_until(stopped), "generation still running after its client left"


async def test_a_model_that_cannot_load_is_a_clear_error(http, client, foundry_cache):
    [onnx] = list(foundry_cache.rglob("model.onnx"))
    onnx.write_bytes(b"this is not an onnx file")
    response = await http.get("openai/load/tiny")
    assert 400 <= response.status_code < 600 and response.status_code != 500
    error = response.json()["error"]
    assert error["message"] and "Traceback" not in error["message"]
    assert runner_processes() == []
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model="tiny", messages=MSG, max_tokens=2)


async def test_an_unavailable_execution_provider_is_refused(http):
    response = await http.get("openai/load/tiny?ep=cuda")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "provider_unavailable"
    assert runner_processes() == []
