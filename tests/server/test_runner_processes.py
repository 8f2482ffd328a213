"""A small CPU model gets more runner processes while all of its processes are busy.

onnxruntime-genai makes one token at a time per process (it holds the GIL), so the tiny model, whose
operators use one thread, can only use a second core from a second process.
"""

from __future__ import annotations

import asyncio
import os
import signal
from types import SimpleNamespace

import psutil
import pytest

from foundry_jupyter.engine.hardware import cpu_threads
from foundry_jupyter.runner.serve import processes_worth_running

from .conftest import LONG, runner_processes

pytestmark = pytest.mark.usefixtures("each_transport")  # every test: unix socket, then TCP


def grows(test):
    """A test that loads the long tiny model and needs it to grow a second process."""
    test = pytest.mark.long_model(test)
    return pytest.mark.skipif(cpu_threads() < 2, reason="a second runner process needs a second core")(test)


STORY = [{"role": "user", "content": "Tell me a long story."}]


async def wait_until(predicate, *, timeout: float = 30.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


def long_stream(client, messages=STORY) -> asyncio.Future:
    """A streamed answer of up to 4000 tokens (seconds on the long tiny model), read to its end."""

    async def run() -> None:
        chunks = await client.chat.completions.create(
            model=LONG, messages=messages, max_tokens=4000, temperature=0, stream=True
        )
        async for _chunk in chunks:
            pass

    return asyncio.ensure_future(run())


async def stop(*streams: asyncio.Future) -> None:
    for stream in streams:
        stream.cancel()
    await asyncio.gather(*streams, return_exceptions=True)


async def grown(client, http, service):
    """The long tiny model loaded and grown to two processes by two long streams, still running."""
    await http.get(f"openai/load/{LONG}")
    runner = service.supervisor.get(LONG)
    streams = [long_stream(client), long_stream(client)]
    if not await wait_until(lambda: len(runner.processes) == 2):
        await stop(*streams)
        pytest.fail("no second process started")
    return runner, streams


async def completed(service, runner) -> list[int]:
    infos = [await service.supervisor.call(runner, {"op": "info"}, p) for p in runner.processes]
    return [i["completed"] for i in infos]


@grows
async def test_busy_model_grows_a_process_and_serves_from_both(client, http, service):
    await http.get(f"openai/load/{LONG}")
    runner = service.supervisor.get(LONG)
    # the tiny model's folder sets one operator thread: it may grow to FoundryApp.max_runner_processes
    assert runner.max_processes == 4
    first = long_stream(client)
    assert await wait_until(lambda: runner.active == 1)
    assert len(runner.processes) == 1  # one request at a time never needs a second process

    second = long_stream(client)  # finds every process busy: another one starts in the background
    try:
        assert await wait_until(lambda: len(runner.processes) == 2), "no second process started"
        assert sorted(p.pid for p in runner_processes()) == sorted(runner.pids)
        before = await completed(service, runner)
        answer = await client.chat.completions.create(model=LONG, messages=STORY, max_tokens=3)
        assert answer.usage.completion_tokens > 0
        after = await completed(service, runner)
        # the idle new process answered, not the busy first one
        assert [b - a for a, b in zip(before, after, strict=True)] == [0, 1]
        loaded = (await http.get("loaded")).json()["models"][0]
        assert sorted(loaded["pids"]) == sorted(runner.pids) and loaded["activeRequests"] == 2
    finally:
        await stop(first, second)


@grows
async def test_a_dead_extra_process_leaves_the_model_serving(client, http, service):
    runner, streams = await grown(client, http, service)
    await stop(*streams)
    assert await wait_until(lambda: runner.active == 0)
    extra = runner.processes[1].pid
    os.kill(extra, signal.SIGKILL)
    psutil.Process(extra).wait(timeout=10)
    assert await wait_until(lambda: runner.pids == [runner.pid]), "the dead process was not dropped"
    answer = await client.chat.completions.create(model=LONG, messages=STORY, max_tokens=2)
    assert answer.usage.completion_tokens > 0
    assert service.supervisor.get(LONG) is runner


@grows
async def test_killing_the_first_process_stops_the_others(client, http, service):
    runner, streams = await grown(client, http, service)
    try:
        extra = runner.processes[1].pid
        os.kill(runner.pid, signal.SIGKILL)
        assert await wait_until(lambda: not psutil.pid_exists(extra) or _zombie(extra)), (
            "the model's other process outlived its first"
        )
    finally:
        await stop(*streams)
    assert service.supervisor.get(LONG) is None
    answer = await client.chat.completions.create(model=LONG, messages=STORY, max_tokens=2)
    assert answer.usage.completion_tokens > 0  # a fresh runner


@grows
async def test_a_resent_history_goes_back_to_the_process_that_holds_it(client, http, service):
    runner, busy = await grown(client, http, service)
    try:
        await stop(busy[1])
        assert await wait_until(lambda: [p.active for p in runner.processes] == [1, 0])
        # the first turn runs on the second process: the first is busy
        question = [{"role": "user", "content": "Name three colours."}]
        first = await client.chat.completions.create(
            model=LONG, messages=question, max_tokens=12, temperature=0
        )
    finally:
        await stop(busy[0])
    assert await wait_until(lambda: runner.active == 0)
    history = [
        *question,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And three more."},
    ]
    # both idle now: without affinity the first process would take it and recompute everything
    second = await client.chat.completions.create(model=LONG, messages=history, max_tokens=4, temperature=0)
    assert second.usage.prompt_tokens_details.cached_tokens > 0


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_only_a_model_that_leaves_cores_idle_runs_in_more_processes():
    cores = cpu_threads()
    assert processes_worth_running(SimpleNamespace(cpu_threads=1, execution_provider="cpu")) == cores
    assert processes_worth_running(SimpleNamespace(cpu_threads=cores, execution_provider="cpu")) == 1
    # a GPU model, or one whose threads onnxruntime chooses, batches in its one process
    assert processes_worth_running(SimpleNamespace(cpu_threads=1, execution_provider="cuda")) == 1
    assert processes_worth_running(SimpleNamespace(cpu_threads=None, execution_provider="cpu")) == 1
