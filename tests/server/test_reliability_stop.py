"""No runner outlives its server, whatever state it is in when the server goes: still loading its
model when the server stops, still being stopped after its model's first process died, or still
loading when the server process dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .conftest import LONG, TINY, runner_processes
from .test_errors import assert_openai_error
from .test_runner_processes import grown, grows, stop


@pytest.fixture
def foundry_config() -> dict:
    return {"runner_stop_timeout": 1.0}


def _ended(pid: int, timeout: float) -> bool:
    """Whether `pid` exits within `timeout` s (a zombie that no one reaped counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP keeps the runner loading")
async def test_a_runner_still_loading_when_the_server_stops_is_stopped_with_it(http, service):
    load = asyncio.ensure_future(http.get(f"openai/load/{TINY}"))
    deadline = time.monotonic() + 60
    while not (started := runner_processes()):
        assert time.monotonic() < deadline and not load.done(), "no runner process started"
        await asyncio.sleep(0.01)
    os.kill(started[0].pid, signal.SIGSTOP)  # it stays where it is: loading its model
    assert service.supervisor.get(TINY) is None and not load.done()

    await service.close()  # what the extension's stop does
    assert runner_processes() == [], "a runner still loading outlived the server's stop"
    assert_openai_error(await load, 503, code="server_stopping")


@grows
@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP makes a process slow to stop")
async def test_processes_still_stopping_after_their_model_died_are_stopped_with_the_server(
    client, http, service
):
    runner, streams = await grown(client, http, service)
    first, extra = runner.processes
    os.kill(extra.pid, signal.SIGSTOP)  # slow to stop: SIGTERM waits, a kill comes after the stop limit
    os.kill(first.pid, signal.SIGKILL)  # the model's first process dies (or is killed as hung) mid-stream
    deadline = time.monotonic() + 10
    while service.supervisor.get(LONG) is not None:  # the model is forgotten, `extra` stops meanwhile
        assert time.monotonic() < deadline, "the model outlived its first process"
        await asyncio.sleep(0.05)
    try:
        await service.close()
        assert runner_processes() == [], "a process being stopped in the background outlived the server"
    finally:
        await stop(*streams)


def test_a_runner_whose_server_dies_while_it_loads_exits(tmp_path: Path, tiny_model_dir: Path):
    # An onnxruntime_genai that never finishes importing: the runner stays loading its model.
    stall = tmp_path / "stall"
    stall.mkdir()
    (stall / "onnxruntime_genai.py").write_text("import time\ntime.sleep(3600)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stall), *sys.path])}
    runner = [
        sys.executable, "-m", "foundry_jupyter.runner", "--model-path", str(tiny_model_dir),
        "--socket", str(tmp_path / "sock"),
    ]  # fmt: skip
    server = (
        "import os, subprocess, sys\n"
        f"runner = subprocess.Popen({runner!r} + ['--parent-pid', str(os.getpid())])\n"
        "print(runner.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", server], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    try:
        assert not _ended(pid, 3.0), "the runner did not wait for its model"
        parent.kill()
        parent.wait()
        assert _ended(pid, 10.0), "a runner loading its model outlived its dead server"
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
