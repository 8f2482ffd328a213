"""`RunnerSupervisor`'s policies against fake runners: no processes, milliseconds per test.

TTL expiry, eviction of the least recently used idle model, growth of a small model's processes,
conversation affinity and crash handling. The same behaviour with real runner processes is covered by
test_lifecycle.py and test_runner_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from foundry_jupyter.errors import FoundryError, RunnerFailed
from foundry_jupyter.service import runners, wire
from foundry_jupyter.service.processes import RunnerProcess
from foundry_jupyter.service.runners import ModelBusy, Runner, RunnerSupervisor

pytestmark = pytest.mark.timeout(10)

MODEL = Path("/models/a")
_pids = itertools.count(1_000_000)
_conversations = itertools.count()


class FakeWriter:
    """The server's end of a fake connection: each request line goes to the fake runner."""

    def __init__(self, process: FakeProcess, reader: asyncio.StreamReader) -> None:
        self.process, self.reader, self.closed = process, reader, False

    def write(self, data: bytes) -> None:
        for line in data.splitlines():
            self.process.receive(wire.decode(line), self.reader)

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class FakeProcess(RunnerProcess):
    """A runner without a process: `info` and `count` are answered at once, a generation when
    `finish()` is called; `crash()` makes it exit and drop its connections."""

    def __init__(self) -> None:
        super().__init__()
        self._pid = next(_pids)
        self.exit_code: int | None = None
        self.stopped = False
        self.requests: list[dict[str, Any]] = []
        self.readers: list[asyncio.StreamReader] = []
        self.generating: list[asyncio.StreamReader] = []
        self.stop_delay_s = 0.0  # how long it takes to exit when asked to

    @property
    def pid(self) -> int:
        return self._pid

    def poll(self) -> int | None:
        return self.exit_code

    async def open_connection(self) -> tuple[asyncio.StreamReader, Any]:
        if self.exit_code is not None:
            raise ConnectionRefusedError("nothing listens")
        reader = asyncio.StreamReader()
        self.readers.append(reader)
        return reader, FakeWriter(self, reader)

    def receive(self, request: dict[str, Any], reader: asyncio.StreamReader) -> None:
        self.requests.append(request)
        if request["op"] in runners.GENERATION_OPS:
            self.generating.append(reader)
        else:
            reader.feed_data(wire.encode({"result": {"tokens": 3, "pid": self.pid}}))

    def finish(self) -> None:
        done = {"finish_reason": "stop", "usage": None}
        for reader in self.generating:
            reader.feed_data(wire.encode({"t": "hi", "done": done}))
        self.generating.clear()

    def crash(self, status: int = -9) -> None:
        self.exit_code = status
        for reader in self.readers:
            reader.feed_eof()

    async def stop(self, timeout_s: float) -> None:
        await asyncio.sleep(self.stop_delay_s)
        self.stopped = True
        if self.exit_code is None:
            self.crash(-15)

    def kill(self) -> None:
        if self.exit_code is None:
            self.exit_code = -9


class FakeSpawn:
    """Stands in for `spawn_runner`; `processes` is what the runner's `info` says the machine can run
    side by side, `fail` an error the next starts raise. While `loading` is set, a started process
    waits for it to be cleared (its model loads), and is stopped if its start is cancelled meanwhile,
    as `spawn_runner` does."""

    def __init__(self, processes: int = 1) -> None:
        self.processes = processes
        self.fail: Exception | None = None
        self.started: list[FakeProcess] = []
        self.loading: asyncio.Event | None = None
        self.stop_delay_s = 0.0

    async def __call__(
        self, model_id: str, path: Path, ep: str | None
    ) -> tuple[RunnerProcess, dict[str, Any]]:
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        process = FakeProcess()
        process.stop_delay_s = self.stop_delay_s
        self.started.append(process)
        if self.loading is not None:
            try:
                await self.loading.wait()
            except BaseException:
                await process.stop(1.0)
                raise
        info = {"model_id": model_id, "execution_provider": ep or "cpu", "processes": self.processes}
        return process, info


@contextlib.asynccontextmanager
async def supervised(processes: int = 1, **options: Any) -> AsyncIterator[tuple[RunnerSupervisor, FakeSpawn]]:
    spawn = FakeSpawn(processes)
    supervisor = RunnerSupervisor(spawn=spawn, **options)
    try:
        yield supervisor, spawn
    finally:
        await supervisor.stop()
    assert all(p.stopped for p in spawn.started)


def chat(*contents: str) -> dict[str, Any]:
    """A chat request whose conversation opens with `contents[0]`, alternating user and assistant."""
    roles = itertools.cycle(("user", "assistant"))
    return {"op": "chat", "messages": [{"role": next(roles), "content": c} for c in contents]}


async def busy(supervisor: RunnerSupervisor, runner: Runner, requests: int) -> None:
    """Open `requests` generations, each of a new conversation, and leave them running (the
    supervisor's stop at the end of `supervised` ends them); return once the processes they asked
    for have started."""
    for _ in range(requests):
        await supervisor.open(runner, chat(f"conversation {next(_conversations)}"))
    await settle(supervisor)


async def two_busy_processes(supervisor: RunnerSupervisor) -> tuple[Runner, FakeProcess, FakeProcess]:
    """Load model a:1 (allowed two processes) and keep both of its processes busy; return the runner,
    its first process and its extra one."""
    runner, _ = await supervisor.ensure("a:1", MODEL)
    await busy(supervisor, runner, 2)
    first, extra = runner.processes
    return runner, first, extra


async def settle(supervisor: RunnerSupervisor) -> None:
    """Let the background work (processes being started or stopped) finish."""
    for runner in supervisor.runners.values():
        await asyncio.gather(*runner.growing)
    await asyncio.gather(*supervisor._stopping)


def idle_for(supervisor: RunnerSupervisor, model_id: str, seconds: float) -> None:
    supervisor.runners[model_id].last_used = time.monotonic() - seconds


# ---- loading and TTL ---------------------------------------------------------------------------
async def test_a_model_loads_once_and_a_second_load_reuses_it():
    async with supervised() as (supervisor, spawn):
        runner, started = await supervisor.ensure("a:1", MODEL, alias="a", ttl=30)
        again, started_again = await supervisor.ensure("a:1", MODEL, ttl=60)
        assert (started, started_again) == (True, False)
        assert again is runner and runner.ttl_s == 60 and len(spawn.started) == 1
        assert runner.execution_provider == "cpu" and runner.pid == spawn.started[0].pid


async def test_an_idle_model_is_unloaded_when_its_ttl_runs_out():
    async with supervised() as (supervisor, spawn):
        await supervisor.ensure("a:1", MODEL, ttl=60)
        idle_for(supervisor, "a:1", 59)
        assert await supervisor.reap() == []
        idle_for(supervisor, "a:1", 61)
        assert await supervisor.reap() == ["a:1"]
        assert supervisor.get("a:1") is None and spawn.started[0].stopped


async def test_a_model_serving_a_request_outlives_its_ttl():
    async with supervised() as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL, ttl=60)
        call = await supervisor.open(runner, chat("hi"))
        idle_for(supervisor, "a:1", 600)
        assert await supervisor.reap() == []
        assert runner.ttl_remaining() == 60.0
        spawn.started[0].finish()
        assert (await call.next())["done"]["finish_reason"] == "stop"
        call.close()
        assert runner.ttl_remaining() == pytest.approx(60, abs=1)  # the TTL counts from the answer
        idle_for(supervisor, "a:1", 61)
        assert await supervisor.reap() == ["a:1"]


async def test_ttl_zero_keeps_a_model_until_unloaded():
    async with supervised() as (supervisor, _spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL, ttl=0)
        idle_for(supervisor, "a:1", 10**6)
        assert await supervisor.reap() == [] and runner.ttl_remaining() is None
        assert await supervisor.unload("a:1") and supervisor.get("a:1") is None


async def test_the_reaper_unloads_in_the_background(monkeypatch):
    monkeypatch.setattr(runners, "REAP_INTERVAL_S", 0.005)
    async with supervised(default_ttl_s=60) as (supervisor, spawn):
        await supervisor.ensure("a:1", MODEL)
        idle_for(supervisor, "a:1", 61)
        for _ in range(200):
            if spawn.started[0].stopped:
                break
            await asyncio.sleep(0.005)
        assert supervisor.get("a:1") is None and spawn.started[0].stopped


# ---- eviction and unloading -------------------------------------------------------------------
async def test_a_load_past_max_loaded_evicts_the_least_recently_used_idle_model():
    async with supervised(max_loaded=2) as (supervisor, spawn):
        await supervisor.ensure("a:1", MODEL)
        await supervisor.ensure("b:1", MODEL)
        idle_for(supervisor, "a:1", 5)
        idle_for(supervisor, "b:1", 10)
        await supervisor.ensure("c:1", MODEL)
        assert sorted(r.model_id for r in supervisor.loaded()) == ["a:1", "c:1"]
        assert [p.stopped for p in spawn.started] == [False, True, False]


async def test_no_model_is_evicted_while_every_loaded_one_is_busy():
    async with supervised(max_loaded=1) as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        call = await supervisor.open(runner, chat("hi"))
        with pytest.raises(FoundryError) as refused:
            await supervisor.ensure("b:1", MODEL)
        assert (refused.value.status, refused.value.code) == (503, "too_many_models")
        assert [r.model_id for r in supervisor.loaded()] == ["a:1"] and len(spawn.started) == 1
        call.cancel()


async def test_unload_refuses_a_busy_model_unless_forced():
    async with supervised() as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        call = await supervisor.open(runner, chat("hi"))
        with pytest.raises(ModelBusy):
            await supervisor.unload("a:1")
        assert await supervisor.unload("a:1", force=True)
        assert spawn.started[0].stopped and not await supervisor.unload("a:1")
        with pytest.raises(RunnerFailed):
            await call.next()  # the stopped runner's connection is gone


async def test_another_execution_provider_restarts_an_idle_model_and_refuses_a_busy_one():
    async with supervised() as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL, ep="cpu")
        moved, started = await supervisor.ensure("a:1", MODEL, ep="CUDAExecutionProvider")
        assert started and moved is not runner and moved.execution_provider == "CUDAExecutionProvider"
        assert spawn.started[0].stopped
        same, started = await supervisor.ensure("a:1", MODEL, ep="cuda")
        assert same is moved and not started  # the same provider, by its short name
        call = await supervisor.open(moved, chat("hi"))
        with pytest.raises(ModelBusy):
            await supervisor.ensure("a:1", MODEL, ep="cpu")
        call.cancel()


# ---- processes per model -------------------------------------------------------------------------
async def test_a_small_model_grows_a_process_whenever_all_are_busy_up_to_the_limit():
    async with supervised(processes=2, max_processes=3) as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        assert runner.max_processes == 3
        for _ in range(6):
            await busy(supervisor, runner, 1)  # one more request, after the last one's growth
        assert len(runner.processes) == len(spawn.started) == 3
        assert sorted(p.active for p in runner.processes) == [2, 2, 2]  # each request to the least busy


async def test_a_burst_of_requests_never_starts_processes_past_the_limit():
    async with supervised(processes=2, max_processes=3) as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        await asyncio.gather(*(supervisor.open(runner, chat(f"conversation {n}")) for n in range(6)))
        await settle(supervisor)
        assert len(runner.processes) == len(spawn.started) == 3


async def test_a_model_that_uses_every_core_keeps_one_process():
    async with supervised(processes=1, max_processes=4) as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        await busy(supervisor, runner, 3)
        assert len(runner.processes) == len(spawn.started) == 1 and runner.active == 3


async def test_questions_about_the_model_go_to_its_first_process_without_growing():
    async with supervised(processes=2, max_processes=3) as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        busy = await supervisor.open(runner, chat("hi"))
        for _ in range(3):
            assert (await supervisor.call(runner, {"op": "count", "messages": []}))["tokens"] == 3
        await settle(supervisor)
        assert len(spawn.started) == 1 and spawn.started[0].requests[-1]["op"] == "count"
        busy.cancel()


async def test_a_process_that_fails_to_start_stops_further_growth():
    async with supervised(processes=2, max_processes=4) as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        spawn.fail = RunnerFailed("out of memory")
        await busy(supervisor, runner, 2)
        assert runner.max_processes == 1 and len(runner.processes) == 1
        await supervisor.open(runner, chat("one more"))
        assert runner.growing == set()  # no new attempt


async def test_a_conversation_returns_to_the_process_that_served_it_unless_that_one_is_busier():
    async with supervised(processes=2, max_processes=2) as (supervisor, _spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        other = await supervisor.open(runner, chat("other"))
        filler = await supervisor.open(runner, chat("filler"))  # all busy: a second process starts
        await settle(supervisor)
        p1, p2 = runner.processes
        first_turn = await supervisor.open(runner, chat("weather?"))
        assert first_turn.process is p2  # the least busy
        for call in (other, filler, first_turn):
            call.cancel()
        # Both idle: the conversation's next turn goes back to p2, a new conversation to the first idle
        third = await supervisor.open(runner, chat("weather?", "Sunny.", "And tomorrow?"))
        fresh = await supervisor.open(runner, chat("something else"))
        assert (third.process, fresh.process) == (p2, p1)
        # p2 now busier than p1: the conversation goes where there is room
        hog = await supervisor.open(runner, chat("hog"), process=p2)
        fourth = await supervisor.open(runner, chat("weather?", "Sunny.", "And tomorrow?", "Rain.", "Sure?"))
        assert fourth.process is p1
        for call in (third, fresh, hog, fourth):
            call.cancel()


# ---- crashes -----------------------------------------------------------------------------------------
async def test_a_crashed_model_is_forgotten_and_the_next_load_starts_a_fresh_runner():
    async with supervised() as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        spawn.started[0].crash()
        assert supervisor.get("a:1") is None and supervisor.loaded() == []
        await settle(supervisor)
        fresh, started = await supervisor.ensure("a:1", MODEL)
        assert started and fresh is not runner and fresh.pid == spawn.started[1].pid


async def test_a_crash_mid_request_fails_the_request_and_unloads_the_model():
    async with supervised() as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        call = await supervisor.open(runner, chat("hi"))
        spawn.started[0].crash(-11)
        with pytest.raises(RunnerFailed, match="stopped unexpectedly"):
            await call.next()
        assert supervisor.get("a:1") is None and runner.active == 0


async def test_a_silent_runner_times_out_is_killed_and_replaced():
    async with supervised(first_token_timeout_s=0.1, token_timeout_s=0.1) as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        call = await supervisor.open(runner, chat("hi"))
        with pytest.raises(runners.RunnerTimeout, match="runner_first_token_timeout") as info:
            await call.next()
        assert info.value.status == 504 and info.value.code == "runner_timeout"
        await settle(supervisor)
        assert supervisor.get("a:1") is None and spawn.started[0].exit_code == -9 and runner.active == 0
        fresh, started = await supervisor.ensure("a:1", MODEL)
        assert started and fresh.pid == spawn.started[1].pid


async def test_a_runner_silent_between_tokens_times_out_with_the_token_limit():
    async with supervised(first_token_timeout_s=5, token_timeout_s=0.1) as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        call = await supervisor.open(runner, chat("hi"))
        spawn.started[0].generating[0].feed_data(wire.encode({"t": "a"}))
        assert (await call.next())["t"] == "a"
        with pytest.raises(runners.RunnerTimeout, match="runner_token_timeout"):
            await call.next()


async def test_a_request_cut_by_a_forced_unload_says_the_model_was_unloaded():
    async with supervised() as (supervisor, _spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        call = await supervisor.open(runner, chat("hi"))
        await supervisor.unload("a:1", force=True)
        with pytest.raises(runners.ModelUnloaded, match="was unloaded"):
            await call.next()


async def test_a_dead_extra_process_is_dropped_and_the_model_stays():
    async with supervised(processes=2, max_processes=2) as (supervisor, _spawn):
        runner, first, extra = await two_busy_processes(supervisor)
        extra.crash()
        assert await supervisor.reap() == []
        await settle(supervisor)
        assert runner.processes == [first] and supervisor.get("a:1") is runner and extra.stopped


async def test_the_first_process_dying_stops_the_others():
    async with supervised(processes=2, max_processes=2) as (supervisor, _spawn):
        _, first, extra = await two_busy_processes(supervisor)
        first.crash()
        await supervisor.reap()
        await settle(supervisor)
        assert supervisor.get("a:1") is None and extra.stopped


async def test_a_runner_that_refuses_connections_fails_the_request():
    async with supervised() as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        spawn.started[0].exit_code = 1  # died between the check and the connection
        with pytest.raises(RunnerFailed, match="not answering"):
            await supervisor.open(runner, chat("hi"), process=runner.processes[0])
        assert supervisor.get("a:1") is None and runner.active == 0


async def test_a_runner_that_fails_to_start_leaves_nothing_loaded():
    async with supervised() as (supervisor, spawn):
        spawn.fail = RunnerFailed("the model runner exited with status 2 while loading the model")
        with pytest.raises(RunnerFailed):
            await supervisor.ensure("a:1", MODEL)
        assert supervisor.loaded() == [] and supervisor.runners == {}


async def test_kill_all_now_kills_every_process():
    async with supervised(processes=2, max_processes=2) as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        await busy(supervisor, runner, 2)
        supervisor.kill_all_now()
        assert supervisor.runners == {} and all(p.exit_code == -9 for p in spawn.started)
        for process in spawn.started:
            process.stopped = True  # killed, not stopped: nothing for `stop()` to do


# ---- the server's stop ---------------------------------------------------------------------------
async def started(spawn: FakeSpawn, count: int) -> None:
    while len(spawn.started) < count:
        await asyncio.sleep(0)


async def test_stop_stops_a_model_still_loading_and_its_request_says_why():
    async with supervised() as (supervisor, spawn):
        spawn.loading = asyncio.Event()  # never set: the model is still loading when the server stops
        load = asyncio.ensure_future(supervisor.ensure("a:1", MODEL))
        await started(spawn, 1)
        await supervisor.stop()
        assert spawn.started[0].stopped and supervisor.runners == {}
        with pytest.raises(runners.ServerStopping) as info:
            await load
        assert info.value.status == 503 and info.value.code == "server_stopping"


async def test_a_load_that_ends_as_the_server_stops_leaves_no_process():
    async with supervised() as (supervisor, spawn):
        spawn.loading = asyncio.Event()
        load = asyncio.ensure_future(supervisor.ensure("a:1", MODEL))
        await started(spawn, 1)
        spawn.loading.set()  # loaded, but its start has not run on since
        await supervisor.stop()
        assert spawn.started[0].stopped and supervisor.runners == {}
        await asyncio.gather(load, return_exceptions=True)
        with pytest.raises(runners.ServerStopping):
            await supervisor.ensure("a:1", MODEL)  # nothing starts after the stop
        assert len(spawn.started) == 1


async def test_stop_stops_a_process_still_starting_for_a_busy_model():
    async with supervised(processes=2, max_processes=2) as (supervisor, spawn):
        runner, _ = await supervisor.ensure("a:1", MODEL)
        spawn.loading = asyncio.Event()
        spawn.stop_delay_s = 0.2  # the process still loading takes a while to exit when asked
        for conversation in ("one", "two"):  # the second finds every process busy: one more starts
            await supervisor.open(runner, chat(conversation))
        await started(spawn, 2)
        await supervisor.stop()
        assert all(p.stopped for p in spawn.started) and runner.processes == [spawn.started[0]]


async def test_stop_waits_for_the_processes_stopping_after_their_model_died():
    async with supervised(processes=2, max_processes=2) as (supervisor, spawn):
        spawn.stop_delay_s = 0.2  # processes that take a while to exit when asked
        _, first, extra = await two_busy_processes(supervisor)
        first.crash()
        assert supervisor.get("a:1") is None  # its other process now stops in the background
        await supervisor.stop()
        assert extra.stopped
