"""One copy of a loaded model that takes requests: what the supervisor starts, talks to and stops.

`RunnerProcess` is all the supervisor sees of it. `spawn_runner` makes the real kind, a
`python -m foundry_jupyter.runner` child listening on a unix socket or on loopback TCP (`transport`);
the supervisor's tests make fakes.

Process control goes through `psutil` and `subprocess`, which work on every platform; the few POSIX-only
calls sit behind a platform check, with a comment on what the other platforms do instead.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from ..errors import FoundryError, RunnerFailed
from . import transport, wire, workdirs
from .transport import Address, Kind

log = logging.getLogger("foundry_jupyter.service")

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class RunnerProcess(abc.ABC):
    """A process holding the model once. Compared by identity. `active` counts its requests in flight;
    `idle` keeps connections whose last answer ended, for the next request."""

    def __init__(self) -> None:
        self.active = 0
        self.idle: list[Streams] = []
        self.unloading = False  # stopped on purpose (unload, cache removal, TTL), not crashed

    @property
    @abc.abstractmethod
    def pid(self) -> int: ...

    @abc.abstractmethod
    def poll(self) -> int | None:
        """Its exit status, None while it runs."""

    @abc.abstractmethod
    async def open_connection(self) -> Streams:
        """A fresh connection to it; raises OSError when nothing listens."""

    @abc.abstractmethod
    async def stop(self, timeout_s: float) -> None:
        """Ask it to exit, kill it after `timeout_s`, and release what it held."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Kill it now, synchronously (at interpreter exit)."""

    def log_tail(self, lines: int = 20) -> str:
        """The end of its output, for the server log when it dies."""
        return "(no log)"

    def alive(self) -> bool:
        return self.poll() is None

    async def connect(self) -> Streams:
        while self.idle:
            reader, writer = self.idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return await self.open_connection()

    def close_idle(self) -> None:
        for _reader, writer in self.idle:
            writer.close()
        self.idle.clear()


class SubprocessRunner(RunnerProcess):
    """A `python -m foundry_jupyter.runner` child: its socket (or port file) and log live in its own
    `workdir`."""

    def __init__(
        self, popen: subprocess.Popen[bytes], workdir: str, kind: Kind = "unix", secret: str = ""
    ) -> None:
        super().__init__()
        self.popen = popen
        self.workdir = workdir
        self.kind = kind
        self.secret = secret
        self.socket_path = os.path.join(workdir, "sock")
        self.port_file = os.path.join(workdir, "port.json")
        self.log_path = os.path.join(workdir, "runner.log")
        self.address: Address | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def listening(self) -> Address | None:
        """Where it listens, once it does: it starts listening only once its model is loaded."""
        if self.address is None:
            if self.kind == "unix":
                if os.path.exists(self.socket_path):
                    self.address = Address("unix", path=self.socket_path)
            else:
                port = transport.read_port_file(self.port_file)
                if port:
                    self.address = Address("tcp", port=port, secret=self.secret)
        return self.address

    async def open_connection(self) -> Streams:
        address = self.listening()
        if address is None:
            raise ConnectionRefusedError(f"runner process {self.pid} is not listening")
        return await address.connect()

    async def stop(self, timeout_s: float) -> None:
        if self.popen.poll() is None:
            children = descendants(self.pid)  # before it exits: then they are no longer its children
            with contextlib.suppress(OSError):
                self.popen.terminate()
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.terminate()
            deadline = time.monotonic() + timeout_s
            while self.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if self.popen.poll() is None:
                log.warning("runner process %s did not stop in time; killing it", self.pid)
                with contextlib.suppress(OSError):
                    self.popen.kill()
                await asyncio.get_running_loop().run_in_executor(None, self.popen.wait)
            await asyncio.get_running_loop().run_in_executor(None, kill_all, children, timeout_s)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        if self.popen.poll() is None:
            children = descendants(self.pid)
            with contextlib.suppress(Exception):
                self.popen.kill()
                self.popen.wait(timeout=5)
            kill_all(children, 0)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def descendants(pid: int) -> list[psutil.Process]:
    """The processes `pid` started, and theirs (a provider's helper processes, say)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_all(processes: list[psutil.Process], grace_s: float) -> None:
    """Kill whichever of `processes` still run after `grace_s` seconds."""
    _gone, alive = psutil.wait_procs(processes, timeout=grace_s) if grace_s > 0 else ([], processes)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


def lower_priority(levels: int) -> None:
    """Run this process `levels` steps below its current CPU priority: Unix nice, or on Windows the
    below-normal priority class (Windows has classes, not levels). Threads started after this inherit
    it (on Linux a nice value is per thread)."""
    if levels <= 0:
        return
    process = psutil.Process()
    if sys.platform == "win32":
        process.nice(psutil.BELOW_NORMAL_PRIORITY_CLASS)
    else:
        process.nice(min(19, process.nice() + levels))


def parent_gone(parent: psutil.Process) -> bool:
    """Whether the process that started this one has exited (compared by start time, so a new
    process that reuses its pid does not count)."""
    try:
        return not parent.is_running() or parent.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def detached() -> dict[str, Any]:
    """`Popen` keywords that keep a Ctrl-C meant for the Jupyter server (which then asks for
    confirmation) away from a runner; runners stop with the server or when it disappears."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}  # POSIX: its own session, out of the terminal's process group


async def spawn_runner(
    model_id: str,
    path: Path,
    ep: str | None,
    *,
    nice: int = 0,
    start_timeout_s: float = 120.0,
    stop_timeout_s: float = 5.0,
    transport_setting: str | None = None,
) -> tuple[RunnerProcess, dict[str, Any]]:
    """Start one runner process for the model folder `path` and wait until its model is loaded;
    returns it and its `info` answer. A load failure raises the runner's own error.
    `transport_setting`: "auto", "unix" or "tcp" (None: $FOUNDRY_JUPYTER_RUNNER_TRANSPORT, else auto)."""
    kind = transport.choose(transport_setting)
    workdir = workdirs.make_workdir()  # only this user may open it
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(transport.SECRET_ENV, None)
    secret = ""
    if kind == "tcp":
        # In the environment, not on the command line: other local users can read every process's
        # command line, but not its environment.
        secret = transport.new_secret()
        env[transport.SECRET_ENV] = secret
        listen = ["--tcp-port-file", os.path.join(workdir, "port.json")]
    else:
        listen = ["--socket", os.path.join(workdir, "sock")]
    cmd = [
        sys.executable,
        "-m",
        "foundry_jupyter.runner",
        "--model-path",
        str(path),
        "--model-id",
        model_id,
        *listen,
        "--parent-pid",
        str(os.getpid()),
        *(["--ep", ep] if ep else []),
        *(["--nice", str(nice)] if nice else []),
    ]
    with open(os.path.join(workdir, "runner.log"), "wb") as log_file:
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            **detached(),
        )
    process = SubprocessRunner(popen, workdir, kind, secret)
    try:
        return process, await _wait_ready(model_id, process, start_timeout_s)
    except BaseException:
        # Cancelled (a client left, the server stops) or failed: the process must go either way, so a
        # second cancel does not cut its stop short.
        stopping = asyncio.ensure_future(process.stop(stop_timeout_s))
        while not stopping.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(stopping)
        raise


async def _wait_ready(model_id: str, process: SubprocessRunner, timeout_s: float) -> dict[str, Any]:
    """The runner listens once the model is loaded: poll for that, then ask for `info`, all within
    `timeout_s`: a runner that listens but never answers (stopped, hung) must not hold the load, and
    every request waiting for that model, forever."""
    deadline = time.monotonic() + timeout_s
    while True:
        rc = process.poll()
        if rc is not None:
            raise _load_error(model_id, rc, process.log_path)
        if process.listening() is not None:
            with contextlib.suppress(OSError):  # TimeoutError included
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    info = await _ask_info(process)
                if info is not None:
                    return info
        if time.monotonic() > deadline:
            raise RunnerFailed(
                f"The model runner for '{model_id}' did not start within {timeout_s:g} s "
                "(FoundryApp.runner_start_timeout)."
            )
        await asyncio.sleep(0.05)


async def _ask_info(process: SubprocessRunner) -> dict[str, Any] | None:
    """The runner's `info` answer; None when it closed the connection first."""
    reader, writer = await process.open_connection()
    try:
        writer.write(wire.encode({"op": "info"}))
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    return wire.decode(line).get("result", {}) if line else None


def _load_error(model_id: str, rc: int, log_path: str) -> FoundryError:
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith(wire.ERROR_PREFIX):
            with contextlib.suppress(ValueError):
                return wire.error_from_wire(json.loads(line[len(wire.ERROR_PREFIX) :]))
    log.error("runner for %s exited with status %s while loading:\n%s", model_id, rc, "\n".join(lines[-30:]))
    return RunnerFailed(
        f"The model runner for '{model_id}' exited with status {rc} while loading the model; "
        "the server log has its output."
    )
