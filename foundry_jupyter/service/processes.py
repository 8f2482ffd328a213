"""One copy of a loaded model that takes requests: what the supervisor starts, talks to and stops.

`RunnerProcess` is all the supervisor sees of it. `spawn_runner` makes the real kind, a
`python -m foundry_jupyter.runner` child listening on a unix socket; the supervisor's tests make fakes.
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
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import FoundryError, RunnerFailed
from . import wire

log = logging.getLogger("foundry_jupyter.service")

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class RunnerProcess(abc.ABC):
    """A process holding the model once. Compared by identity. `active` counts its requests in flight;
    `idle` keeps connections whose last answer ended, for the next request."""

    def __init__(self) -> None:
        self.active = 0
        self.idle: list[Streams] = []

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
    """A `python -m foundry_jupyter.runner` child: its socket and log live in its own `workdir`."""

    def __init__(self, popen: subprocess.Popen[bytes], workdir: str) -> None:
        super().__init__()
        self.popen = popen
        self.workdir = workdir
        self.socket_path = os.path.join(workdir, "sock")
        self.log_path = os.path.join(workdir, "runner.log")

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    async def open_connection(self) -> Streams:
        return await asyncio.open_unix_connection(self.socket_path)

    async def stop(self, timeout_s: float) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.terminate()
            deadline = time.monotonic() + timeout_s
            while self.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if self.popen.poll() is None:
                log.warning("runner process %s did not stop in time; killing it", self.pid)
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                await asyncio.get_running_loop().run_in_executor(None, self.popen.wait)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(Exception):
                self.popen.kill()
                self.popen.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


async def spawn_runner(
    model_id: str,
    path: Path,
    ep: str | None,
    *,
    nice: int = 0,
    start_timeout_s: float = 120.0,
    stop_timeout_s: float = 5.0,
) -> tuple[RunnerProcess, dict[str, Any]]:
    """Start one runner process for the model folder `path` and wait until its model is loaded;
    returns it and its `info` answer. A load failure raises the runner's own error."""
    workdir = tempfile.mkdtemp(prefix="fj-runner-")
    cmd = [
        sys.executable,
        "-m",
        "foundry_jupyter.runner",
        "--model-path",
        str(path),
        "--model-id",
        model_id,
        "--socket",
        os.path.join(workdir, "sock"),
        "--parent-pid",
        str(os.getpid()),
        *(["--ep", ep] if ep else []),
        *(["--nice", str(nice)] if nice else []),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(os.path.join(workdir, "runner.log"), "wb") as log_file:
        # Own session: a Ctrl-C meant for the Jupyter server (which then asks for confirmation)
        # must not kill the runners; they stop with the server or when it disappears.
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    process = SubprocessRunner(popen, workdir)
    try:
        return process, await _wait_ready(model_id, process, start_timeout_s)
    except BaseException:
        await process.stop(stop_timeout_s)
        raise


async def _wait_ready(model_id: str, process: SubprocessRunner, timeout_s: float) -> dict[str, Any]:
    """The socket appears once the model is loaded: poll for it, then ask for `info`."""
    deadline = time.monotonic() + timeout_s
    while True:
        rc = process.poll()
        if rc is not None:
            raise _load_error(model_id, rc, process.log_path)
        if os.path.exists(process.socket_path):
            try:
                reader, writer = await process.open_connection()
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
                f"The model runner for '{model_id}' did not start within {timeout_s:g} s "
                "(FoundryApp.runner_start_timeout)."
            )
        await asyncio.sleep(0.05)


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
