"""Runner processes: start, talk to, time out and stop one process per loaded model.

A model lives in its own process (`python -m foundry_jupyter.runner`) so that a native crash or an
out-of-memory kills one runner and never the Jupyter server, and so that unloading returns memory to
the OS. All I/O here is asyncio, so the server's event loop never waits on inference.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FoundryError, RunnerFailed
from . import wire

log = logging.getLogger("foundry_jupyter.service")

REAP_INTERVAL_S = 0.25
READ_SIZE = 256 * 1024  # one read takes every runner message that is waiting


class ModelBusy(FoundryError):
    status = 409
    code = "model_busy"


@dataclass
class Runner:
    """One runner process and what the supervisor knows about it."""

    model_id: str
    alias: str
    path: Path
    requested_ep: str | None
    ttl_s: int
    process: subprocess.Popen[bytes]
    socket_path: str
    workdir: str
    started_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    active: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def execution_provider(self) -> str:
        return str(self.info.get("execution_provider") or self.requested_ep or "")

    @property
    def context_length(self) -> int | None:
        return self.info.get("context_length")

    def alive(self) -> bool:
        return self.process.poll() is None

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

            return int(psutil.Process(self.pid).memory_info().rss)
        except Exception:
            return None


class RunnerCall:
    """One request to a runner. Iterate `messages()`; `cancel()` closes the connection, which stops
    the generation inside the runner."""

    def __init__(
        self, supervisor: RunnerSupervisor, runner: Runner, reader: asyncio.StreamReader, writer: Any
    ) -> None:
        self._supervisor = supervisor
        self.runner = runner
        self._reader = reader
        self._writer = writer
        self.cancelled = False
        self._closed = False
        self._lines: collections.deque[bytes] = collections.deque()
        self._partial = bytearray()

    async def next(self) -> dict[str, Any] | None:
        """The next protocol message, None once the runner closed the connection after a final one."""
        while not self._lines:
            try:
                data = await self._reader.read(READ_SIZE)
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
        return message

    @property
    def has_next(self) -> bool:
        """Whether a message is already here, so `next()` returns without waiting."""
        return bool(self._lines)

    def _died(self, exc: BaseException | None) -> RunnerFailed:
        self.close()
        rc = self.runner.process.poll()
        how = f"exited with status {rc}" if rc is not None else "closed the connection"
        log.warning(
            "runner for %s (pid %s) %s mid-request (%s)", self.runner.model_id, self.runner.pid, how, exc
        )
        self._supervisor._forget_if_dead(self.runner)
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
        with contextlib.suppress(Exception):
            self._writer.close()
        self.runner.active -= 1
        self.runner.last_used = time.monotonic()


class RunnerSupervisor:
    """Starts runners on demand, keeps at most `max_loaded`, unloads them after their idle TTL."""

    def __init__(
        self,
        *,
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 5.0,
        max_loaded: int = 4,
        default_ttl_s: int = 600,
        python: str = sys.executable,
        runner_args: tuple[str, ...] = (),
    ) -> None:
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.max_loaded = max_loaded
        self.default_ttl_s = default_ttl_s
        self.python = python
        self.runner_args = runner_args
        self.runners: dict[str, Runner] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None
        _live_supervisors.add(self)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the TTL reaper on the running loop (idempotent)."""
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def stop(self) -> None:
        """Stop the reaper and every runner (server shutdown)."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reaper
            self._reaper = None
        await self.unload_all()

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
            runner = await self._start_runner(model_id, path, alias=alias, ttl=ttl, ep=ep)
            self.runners[model_id] = runner
            return runner, True

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

    # ---- requests --------------------------------------------------------------------------
    async def open(self, runner: Runner, request: dict[str, Any]) -> RunnerCall:
        """Send one request to `runner` and return the call to read its answer from."""
        try:
            reader, writer = await asyncio.open_unix_connection(runner.socket_path)
        except (ConnectionError, OSError, FileNotFoundError) as exc:
            self._forget_if_dead(runner)
            raise RunnerFailed(
                f"The model runner for '{runner.model_id}' is not answering ({exc.__class__.__name__}). "
                "Try again: a fresh runner starts if it died."
            ) from None
        runner.active += 1
        runner.last_used = time.monotonic()
        call = RunnerCall(self, runner, reader, writer)
        try:
            writer.write(wire.encode(request))
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            raise call._died(exc) from None
        return call

    async def call(self, runner: Runner, request: dict[str, Any]) -> dict[str, Any]:
        """A one-answer request (`count`, `info`): the `result` object."""
        call = await self.open(runner, request)
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

    async def _start_runner(
        self, model_id: str, path: Path, *, alias: str, ttl: int | None, ep: str | None
    ) -> Runner:
        workdir = tempfile.mkdtemp(prefix="fj-runner-")
        socket_path = os.path.join(workdir, "sock")
        log_path = os.path.join(workdir, "runner.log")
        cmd = [
            self.python,
            "-m",
            "foundry_jupyter.runner",
            "--model-path",
            str(path),
            "--model-id",
            model_id,
            "--socket",
            socket_path,
            "--parent-pid",
            str(os.getpid()),
            *(["--ep", ep] if ep else []),
            *self.runner_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as log_file:
            # Own session: a Ctrl-C meant for the Jupyter server (which then asks for confirmation)
            # must not kill the runners; they stop with the server or when it disappears.
            process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        runner = Runner(
            model_id=model_id,
            alias=alias,
            path=Path(path),
            requested_ep=ep,
            ttl_s=self.default_ttl_s if ttl is None else ttl,
            process=process,
            socket_path=socket_path,
            workdir=workdir,
        )
        log.info("starting runner for %s (pid %s)", model_id, process.pid)
        try:
            runner.info = await self._wait_ready(runner, log_path)
        except BaseException:
            await self._stop_runner(runner)
            raise
        log.info("runner for %s ready on %s", model_id, runner.execution_provider)
        return runner

    async def _wait_ready(self, runner: Runner, log_path: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            rc = runner.process.poll()
            if rc is not None:
                raise _load_error(runner, rc, log_path)
            if os.path.exists(runner.socket_path):
                try:
                    reader, writer = await asyncio.open_unix_connection(runner.socket_path)
                    writer.write(wire.encode({"op": "info"}))
                    await writer.drain()
                    line = await reader.readline()
                    writer.close()
                    if line:
                        return wire.decode(line).get("result", {})
                except (ConnectionError, OSError):
                    pass
            if time.monotonic() > deadline:
                raise RunnerFailed(
                    f"The model runner for '{runner.model_id}' did not start within "
                    f"{self.start_timeout_s:g} s "
                    "(FoundryApp.runner_start_timeout)."
                )
            await asyncio.sleep(0.05)

    async def _stop_runner(self, runner: Runner) -> None:
        if self.runners.get(runner.model_id) is runner:
            del self.runners[runner.model_id]
        process = runner.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            deadline = time.monotonic() + self.stop_timeout_s
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if process.poll() is None:
                log.warning("runner for %s did not stop in time; killing it", runner.model_id)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.get_running_loop().run_in_executor(None, process.wait)
        shutil.rmtree(runner.workdir, ignore_errors=True)
        log.info("runner for %s stopped (status %s)", runner.model_id, process.returncode)

    def _forget_if_dead(self, runner: Runner) -> None:
        if runner.alive():
            return
        if self.runners.get(runner.model_id) is runner:
            del self.runners[runner.model_id]
            log.warning(
                "runner for %s died (status %s); its last output:\n%s",
                runner.model_id,
                runner.process.returncode,
                _log_tail(runner),
            )
        shutil.rmtree(runner.workdir, ignore_errors=True)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            try:
                await self.reap()
            except Exception:
                log.exception("runner reaper failed")

    async def reap(self) -> list[str]:
        """Forget dead runners and stop those idle past their TTL. Returns the ids unloaded."""
        now = time.monotonic()
        expired = []
        for runner in list(self.runners.values()):
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
            if runner.alive():
                with contextlib.suppress(Exception):
                    runner.process.kill()
                    runner.process.wait(timeout=5)
            shutil.rmtree(runner.workdir, ignore_errors=True)
        self.runners.clear()


def _log_tail(runner: Runner, lines: int = 20) -> str:
    try:
        text = Path(runner.workdir, "runner.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _norm(ep: str | None) -> str:
    name = (ep or "").lower().removesuffix("executionprovider")
    return name


def _load_error(runner: Runner, rc: int, log_path: str) -> FoundryError:
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith(wire.ERROR_PREFIX):
            with contextlib.suppress(ValueError):
                return wire.error_from_wire(json.loads(line[len(wire.ERROR_PREFIX) :]))
    log.error(
        "runner for %s exited with status %s while loading:\n%s", runner.model_id, rc, "\n".join(lines[-30:])
    )
    return RunnerFailed(
        f"The model runner for '{runner.model_id}' exited with status {rc} while loading the model; "
        "the server log has its output."
    )


_live_supervisors: weakref.WeakSet[RunnerSupervisor] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for supervisor in list(_live_supervisors):
        supervisor.kill_all_now()
