"""Runner supervision: start, talk to, time out and stop the processes of each loaded model.

A model lives in its own process (`python -m foundry_jupyter.runner`) so that a native crash or an
out-of-memory kills one runner and never the Jupyter server, and so that unloading returns memory to
the OS. A model whose operators leave cores idle (a small CPU model) gets more processes of its own as
concurrent requests need them: onnxruntime-genai makes one token at a time per process. All I/O here is
asyncio, so the server's event loop never waits on inference.

The supervisor starts processes through its `spawn` function (`processes.spawn_runner` unless one is
given), so its policies (TTL, eviction, growth, affinity, crash handling) are tested against fakes.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import hashlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.hardware import normalize_provider
from ..errors import FoundryError, RunnerFailed
from . import wire
from .processes import RunnerProcess, spawn_runner

log = logging.getLogger("foundry_jupyter.service")

REAP_INTERVAL_S = 0.25
MAX_AFFINITY = 256
GENERATION_OPS = ("chat", "text")
READ_SIZE = 256 * 1024  # one read takes every runner message that is waiting


# (model id, model folder, execution provider) -> a started process whose model is loaded, and its `info`
Spawn = Callable[[str, Path, str | None], Awaitable[tuple[RunnerProcess, dict[str, Any]]]]


class RunnerTimeout(RunnerFailed):
    status = 504
    code = "runner_timeout"


class ModelUnloaded(RunnerFailed):
    code = "model_unloaded"


class ModelBusy(FoundryError):
    status = 409
    code = "model_busy"


class ServerStopping(RunnerFailed):
    code = "server_stopping"


@dataclass
class Runner:
    """One loaded model, its processes, and what the supervisor knows about them. The first process
    is the model's own: it answers `info`, and the model is unloaded when it dies."""

    model_id: str
    alias: str
    path: Path
    requested_ep: str | None
    ttl_s: int
    processes: list[RunnerProcess]
    started_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    info: dict[str, Any] = field(default_factory=dict)
    max_processes: int = 1
    # conversation -> the process that served it last: a resent history goes back to the process
    # that holds its state, when that process is no busier than the others
    affinity: collections.OrderedDict[str, RunnerProcess] = field(default_factory=collections.OrderedDict)
    growing: set[asyncio.Task[None]] = field(default_factory=set)  # processes being started

    @property
    def pid(self) -> int:
        return self.processes[0].pid

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    @property
    def active(self) -> int:
        return sum(p.active for p in self.processes)

    @property
    def execution_provider(self) -> str:
        return str(self.info.get("execution_provider") or self.requested_ep or "")

    @property
    def context_length(self) -> int | None:
        return self.info.get("context_length")

    def alive(self) -> bool:
        return self.processes[0].alive()

    def ttl_remaining(self, now: float | None = None) -> float | None:
        """Seconds until the idle TTL unloads this model; None when it never does."""
        if self.ttl_s <= 0:
            return None
        if self.active:
            return float(self.ttl_s)
        now = time.monotonic() if now is None else now
        return max(0.0, self.ttl_s - (now - self.last_used))

    def memory_bytes(self) -> int | None:
        try:
            import psutil

            return sum(int(psutil.Process(pid).memory_info().rss) for pid in self.pids)
        except Exception:
            return None

    def pick(self, request: dict[str, Any]) -> RunnerProcess:
        """The process for `request`: the least busy, preferring the one that served its conversation."""
        live = [p for p in self.processes if p.alive()] or self.processes[:1]
        least = min(p.active for p in live)
        key = _conversation_key(request)
        held = self.affinity.get(key) if key else None
        chosen = held if held in live and held.active == least else next(p for p in live if p.active == least)
        if key:
            self.affinity[key] = chosen
            self.affinity.move_to_end(key)
            while len(self.affinity) > MAX_AFFINITY:
                self.affinity.popitem(last=False)
        return chosen

    def wants_process(self) -> bool:
        """Whether every process is busy and the model may run one more (so a burst of N requests
        starts up to N - 1 processes at once)."""
        return len(self.processes) + len(self.growing) < self.max_processes and all(
            p.active for p in self.processes
        )


def _conversation_key(request: dict[str, Any]) -> str | None:
    """What stays the same across the turns of one conversation: its messages up to the first user
    message (a text prompt: its start)."""
    messages = request.get("messages")
    if messages:
        first_user = next((i for i, m in enumerate(messages) if m.get("role") == "user"), 0)
        opening = json.dumps(messages[: first_user + 1], sort_keys=True, default=str)
    else:
        opening = str(request.get("prompt") or "")[:512]
    return hashlib.blake2b(opening.encode(), digest_size=16).hexdigest() if opening else None


class RunnerCall:
    """One request to a runner. Read its messages with `next()`; `cancel()` closes the connection, which
    stops the generation inside the runner. After the final message `close()` keeps the connection for
    the next request."""

    def __init__(
        self,
        supervisor: RunnerSupervisor,
        runner: Runner,
        process: RunnerProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._supervisor = supervisor
        self.runner = runner
        self.process = process
        self._reader = reader
        self._writer = writer
        self.cancelled = False
        self._closed = False
        self._ended = False  # the final message (`done` or `result`) was read
        self._answered = False  # a first message was read: the time limit is the one between tokens
        self._lines: collections.deque[bytes] = collections.deque()
        self._partial = bytearray()

    async def next(self) -> dict[str, Any] | None:
        """The next protocol message, None once the runner closed the connection after a final one."""
        while not self._lines:
            try:
                async with asyncio.timeout(self._time_limit()):
                    data = await self._reader.read(READ_SIZE)
            except TimeoutError:
                if self.cancelled:
                    return None
                raise self._hung() from None
            except (ConnectionError, OSError, ValueError) as exc:
                if self.cancelled:
                    return None
                raise self._died(exc) from None
            if not data:
                if self.cancelled:
                    return None
                raise self._died(None)
            # Everything the runner sent since the last read, split into whole lines: a reader that
            # fell behind gets many messages from one wake-up.
            self._partial += data
            if b"\n" in data:
                *lines, rest = self._partial.split(b"\n")
                self._partial = bytearray(rest)
                self._lines.extend(lines)
        message = wire.decode(self._lines.popleft())
        if "error" in message:
            self.close()
            raise wire.error_from_wire(message["error"])
        self._ended = "done" in message or "result" in message
        self._answered = True
        return message

    def _time_limit(self) -> float | None:
        """Seconds the runner has to send its next message (None: no limit)."""
        limit = self._supervisor.token_timeout_s if self._answered else self._supervisor.first_token_timeout_s
        return limit if limit and limit > 0 else None

    def _hung(self) -> RunnerTimeout:
        """The runner is alive but sent nothing in time: kill it (the next request starts a fresh one)."""
        self.close()
        setting = "runner_token_timeout" if self._answered else "runner_first_token_timeout"
        log.warning(
            "runner for %s (pid %s) sent nothing for %s s; killing it",
            self.runner.model_id,
            self.process.pid,
            self._time_limit(),
        )
        self._supervisor.kill_hung(self.runner, self.process)
        return RunnerTimeout(
            f"The model runner for '{self.runner.model_id}' sent nothing for {self._time_limit():g} s "
            f"(FoundryApp.{setting}); it was stopped, and the next request starts a fresh one."
        )

    @property
    def has_next(self) -> bool:
        """Whether a message is already here, so `next()` returns without waiting."""
        return bool(self._lines)

    def _died(self, exc: BaseException | None) -> RunnerFailed:
        self.close()
        if self.process.unloading:
            return ModelUnloaded(
                f"The model '{self.runner.model_id}' was unloaded while this request was running (a forced "
                "unload, its removal from the cache, or the server stopping). Load it again to continue."
            )
        rc = self.process.poll()
        how = f"exited with status {rc}" if rc is not None else "closed the connection"
        log.warning(
            "runner for %s (pid %s) %s mid-request (%s)", self.runner.model_id, self.process.pid, how, exc
        )
        self._supervisor._forget_if_dead(self.runner, self.process)
        return RunnerFailed(
            f"The model runner for '{self.runner.model_id}' stopped unexpectedly ({how}). "
            "The next request starts a fresh one."
        )

    def cancel(self) -> None:
        """The client went away: stop the generation (the runner sees the connection close)."""
        self.cancelled = True
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ended and not self.cancelled and not self._lines and not self._partial:
            self.process.idle.append((self._reader, self._writer))
        else:
            with contextlib.suppress(Exception):
                self._writer.close()
        self.process.active -= 1
        self.runner.last_used = time.monotonic()


class RunnerSupervisor:
    """Starts runners on demand, keeps at most `max_loaded`, unloads them after their idle TTL."""

    def __init__(
        self,
        *,
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 5.0,
        max_loaded: int = 4,
        max_processes: int = 4,
        nice: int = 5,
        default_ttl_s: int = 600,
        spawn: Spawn | None = None,
        transport: str | None = None,
        first_token_timeout_s: float | None = None,
        token_timeout_s: float | None = None,
    ) -> None:
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.max_loaded = max_loaded
        self.max_processes = max_processes  # per model that leaves cores idle
        self.nice = nice  # runners' CPU priority below the server's
        self.default_ttl_s = default_ttl_s
        self.transport = transport  # auto | unix | tcp; None: $FOUNDRY_JUPYTER_RUNNER_TRANSPORT
        self._spawn: Spawn = spawn or self._spawn_runner
        # a runner alive but silent this long (a first message, then each next one) counts as hung
        self.first_token_timeout_s = first_token_timeout_s
        self.token_timeout_s = token_timeout_s
        self.runners: dict[str, Runner] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None
        # Every start and stop runs as a task kept here, so that `stop` can wait for all of them: a
        # process still loading, or being stopped in the background, must not outlive the server.
        self._starting: set[asyncio.Task[Any]] = set()
        self._stopping: set[asyncio.Task[None]] = set()
        self.closed = False
        _live_supervisors.add(self)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the TTL reaper on the running loop (idempotent)."""
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def stop(self) -> None:
        """Stop the reaper and every runner (server shutdown), those still loading and those being
        stopped in the background included; no process starts after this."""
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reaper
            self._reaper = None
        for task in self._starting:
            _cancel_once(task)  # a process still loading is stopped by its start (`spawn_runner`)
        while True:
            await self.unload_all()
            pending = self._starting | self._stopping
            if not pending and not self.runners:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    def loaded(self) -> list[Runner]:
        return [r for r in self.runners.values() if r.alive()]

    def get(self, model_id: str) -> Runner | None:
        runner = self.runners.get(model_id)
        if runner is not None and not runner.alive():
            self._forget_if_dead(runner)
            return None
        return runner

    async def ensure(
        self, model_id: str, path: Path, *, alias: str = "", ttl: int | None = None, ep: str | None = None
    ) -> tuple[Runner, bool]:
        """The runner for `model_id`, started when needed. Returns (runner, started_now)."""
        self._refuse_if_closed()
        self.start()
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            runner = self.get(model_id)
            if runner is not None and ep and _norm(ep) != _norm(runner.execution_provider):
                if runner.active:
                    raise ModelBusy(
                        f"'{model_id}' is loaded on {runner.execution_provider} and serving requests; "
                        f"unload it before loading it on {ep}",
                        param="ep",
                    )
                await self._stop_runner(runner)
                runner = None
            if runner is not None:
                if ttl is not None:
                    runner.ttl_s = ttl
                runner.last_used = time.monotonic()
                return runner, False
            await self._make_room()
            start = self._start_runner(model_id, path, alias=alias, ttl=ttl, ep=ep)
            return await self._tracked_start(start), True

    async def unload(self, model_id: str, *, force: bool = False) -> bool:
        """Stop the runner of `model_id`. Without `force`, refuse while it serves requests."""
        runner = self.get(model_id)
        if runner is None:
            return False
        if runner.active and not force:
            raise ModelBusy(
                f"'{model_id}' is serving {runner.active} request(s); wait, or unload with force=true "
                "to stop them now"
            )
        await self._stop_runner(runner)
        return True

    async def unload_all(self) -> list[str]:
        ids = list(self.runners)
        await asyncio.gather(*(self._stop_runner(r) for r in list(self.runners.values())))
        return ids

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise ServerStopping("The server is stopping: it starts no model runner any more.")

    # ---- requests --------------------------------------------------------------------------
    async def open(
        self, runner: Runner, request: dict[str, Any], process: RunnerProcess | None = None
    ) -> RunnerCall:
        """Send one request to `process`, by default the one of `runner`'s processes that `pick`s it, and
        return the call to read its answer from."""
        if process is None:
            process = self._route(runner, request)
        process.active += 1  # before the connection's await, so requests arriving meanwhile see it
        runner.last_used = time.monotonic()
        try:
            reader, writer = await process.connect()
        except (ConnectionError, OSError, FileNotFoundError) as exc:
            process.active -= 1
            self._forget_if_dead(runner, process)
            raise RunnerFailed(
                f"The model runner for '{runner.model_id}' is not answering ({exc.__class__.__name__}). "
                "Try again: a fresh runner starts if it died."
            ) from None
        call = RunnerCall(self, runner, process, reader, writer)
        try:
            writer.write(wire.encode(request))
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            raise call._died(exc) from None
        return call

    def _route(self, runner: Runner, request: dict[str, Any]) -> RunnerProcess:
        """Generation goes to the process `pick`ed for it, and starts another process when every one
        is busy; questions about the model (`info`, `count`) go to its first process."""
        if request.get("op") not in GENERATION_OPS:
            return runner.processes[0]
        if runner.wants_process() and not self.closed:
            task = self._track(self._starting, self._grow(runner))
            runner.growing.add(task)
            task.add_done_callback(runner.growing.discard)
        return runner.pick(request)

    async def call(
        self, runner: Runner, request: dict[str, Any], process: RunnerProcess | None = None
    ) -> dict[str, Any]:
        """A one-answer request (`count`, `info`): the `result` object."""
        call = await self.open(runner, request, process)
        try:
            message = await call.next()
            if message is None or "result" not in message:
                raise RunnerFailed(f"The model runner for '{runner.model_id}' gave no answer.")
            return message["result"]
        finally:
            call.close()

    # ---- internals -------------------------------------------------------------------------
    async def _make_room(self) -> None:
        while len(self.loaded()) >= self.max_loaded:
            idle = [r for r in self.loaded() if not r.active]
            if not idle:
                raise FoundryError(
                    f"All {self.max_loaded} model slots are busy serving requests; unload a model or "
                    "raise FoundryApp.max_loaded_models.",
                    code="too_many_models",
                    status=503,
                )
            oldest = min(idle, key=lambda r: r.last_used)
            log.info("unloading %s to make room (max %s loaded models)", oldest.model_id, self.max_loaded)
            await self._stop_runner(oldest)

    def _track(self, tasks: set[asyncio.Task[Any]], work: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)  # type: ignore[arg-type]
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def _tracked_start(self, start: Awaitable[Runner]) -> Runner:
        """Run `start` as a task `stop` can cancel and wait for. A request whose load the server's stop
        cut answers `server_stopping`; a request cancelled itself (its client left) cancels the load."""
        task = self._track(self._starting, start)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.closed and task.cancelled() and current is not None and not current.cancelling():
                raise ServerStopping("The server stopped while this model was loading.") from None
            raise

    async def _start_runner(
        self, model_id: str, path: Path, *, alias: str, ttl: int | None, ep: str | None
    ) -> Runner:
        """Start the model's first process and register it, with no wait between the two: either the
        runner is in `runners` when `stop` looks, or this task is one that `stop` waits for."""
        log.info("starting runner for %s", model_id)
        process, info = await self._spawn(model_id, path, ep)
        if self.closed:
            await self._stop_process(model_id, process)
            raise ServerStopping("The server stopped while this model was loading.")
        runner = Runner(
            model_id=model_id,
            alias=alias,
            path=Path(path),
            requested_ep=ep,
            ttl_s=self.default_ttl_s if ttl is None else ttl,
            processes=[process],
            info=info,
        )
        # A model that leaves cores idle gets a process per concurrent request, up to `max_processes`:
        # the OS shares the cores between processes better than one process's GIL shares them between
        # requests (figures in benchmarks/README.md).
        if int(info.get("processes") or 1) > 1:
            runner.max_processes = max(1, self.max_processes)
        self.runners[model_id] = runner
        log.info(
            "runner for %s ready on %s (pid %s; up to %s processes)",
            model_id,
            runner.execution_provider,
            process.pid,
            runner.max_processes,
        )
        return runner

    async def _grow(self, runner: Runner) -> None:
        """Start one more process for `runner` (in the background: requests go to the others meanwhile)."""
        try:
            process, _info = await self._spawn(runner.model_id, runner.path, runner.requested_ep)
        except Exception as exc:
            log.warning("could not start another runner process for %s: %s", runner.model_id, exc)
            runner.max_processes = len(runner.processes)  # do not retry on every request
            return
        if self.runners.get(runner.model_id) is runner and runner.alive() and not self.closed:
            runner.processes.append(process)
            log.info(
                "runner for %s: process %s ready (%s now)",
                runner.model_id,
                process.pid,
                len(runner.processes),
            )
        else:
            await self._stop_process(runner.model_id, process)

    async def _spawn_runner(
        self, model_id: str, path: Path, ep: str | None
    ) -> tuple[RunnerProcess, dict[str, Any]]:
        return await spawn_runner(
            model_id,
            path,
            ep,
            nice=self.nice,
            start_timeout_s=self.start_timeout_s,
            stop_timeout_s=self.stop_timeout_s,
            transport_setting=self.transport,
        )

    async def _stop_runner(self, runner: Runner, unloading: bool = True) -> None:
        if self.runners.get(runner.model_id) is runner:
            del self.runners[runner.model_id]
        # A task of its own, which a caller cancelled meanwhile (a client leaving, the reaper at the
        # server's stop) does not cut short, and which `stop` waits for.
        await asyncio.shield(self._track(self._stopping, self._stop_processes(runner, unloading)))

    async def _stop_processes(self, runner: Runner, unloading: bool) -> None:
        growing = list(runner.growing)
        for task in growing:
            _cancel_once(task)
        # A process that finished starting meanwhile was added to `processes`, or stopped by its start.
        await asyncio.gather(*growing, return_exceptions=True)
        await asyncio.gather(*(self._stop_now(runner.model_id, p, unloading) for p in runner.processes))

    async def _stop_process(self, model_id: str, process: RunnerProcess, unloading: bool = True) -> None:
        await asyncio.shield(self._track(self._stopping, self._stop_now(model_id, process, unloading)))

    async def _stop_now(self, model_id: str, process: RunnerProcess, unloading: bool) -> None:
        # `unloading`: stopped on purpose, so a request it cuts says the model was unloaded
        process.unloading = unloading
        process.close_idle()
        await process.stop(self.stop_timeout_s)
        log.info("runner for %s (pid %s) stopped (status %s)", model_id, process.pid, process.poll())

    def kill_hung(self, runner: Runner, process: RunnerProcess) -> None:
        """Kill a process that stopped answering (SIGKILL reaches a stopped process too) and forget it,
        so the next request starts a fresh one."""
        self._track(self._stopping, asyncio.to_thread(process.kill))
        self._forget_if_dead(runner, process, killed=True)

    def _forget_if_dead(
        self, runner: Runner, process: RunnerProcess | None = None, killed: bool = False
    ) -> None:
        """Drop `process` (default: the model's first) if it died or was `killed` just now; when it is the
        first, the whole model goes, and `_stop_runner` stops its other processes in the background."""
        process = process or runner.processes[0]
        if process.alive() and not killed:
            return
        first = process is runner.processes[0]
        if first and self.runners.get(runner.model_id) is runner:
            del self.runners[runner.model_id]
        elif not first and process in runner.processes:
            runner.processes.remove(process)
        else:
            return  # already dropped
        log.warning(
            "%s for %s died (status %s); its last output:\n%s",
            "runner" if first else "a runner process",
            runner.model_id,
            process.poll(),
            process.log_tail(),
        )
        if first:
            self._track(self._stopping, self._stop_processes(runner, unloading=False))
        else:
            self._track(self._stopping, self._stop_now(runner.model_id, process, unloading=False))

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            try:
                await self.reap()
            except Exception:
                log.exception("runner reaper failed")

    async def reap(self) -> list[str]:
        """Forget dead runners (and dead extra processes) and stop those idle past their TTL. Returns
        the ids unloaded."""
        now = time.monotonic()
        expired = []
        for runner in list(self.runners.values()):
            for process in runner.processes[1:]:
                self._forget_if_dead(runner, process)
            if not runner.alive():
                self._forget_if_dead(runner)
            elif runner.ttl_remaining(now) == 0.0:
                lock = self._locks.setdefault(runner.model_id, asyncio.Lock())
                if lock.locked():
                    continue
                async with lock:
                    if runner.active == 0 and runner.ttl_remaining() == 0.0:
                        log.info("unloading %s: idle for %s s (TTL)", runner.model_id, runner.ttl_s)
                        await self._stop_runner(runner)
                        expired.append(runner.model_id)
        return expired

    def kill_all_now(self) -> None:
        """Synchronous last resort at interpreter exit: no runner outlives its server."""
        for runner in list(self.runners.values()):
            for process in runner.processes:
                process.kill()
        self.runners.clear()


def _cancel_once(task: asyncio.Task[Any]) -> None:
    """Cancel `task` unless it was already: a second cancel would cut short its cleanup (stopping the
    process it was starting)."""
    if not task.cancelling():
        task.cancel()


def _norm(ep: str | None) -> str:
    return normalize_provider(ep or "", strict=False)


_live_supervisors: weakref.WeakSet[RunnerSupervisor] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for supervisor in list(_live_supervisors):
        supervisor.kill_all_now()
