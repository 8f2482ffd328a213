"""A runner that is alive but answers nothing (SIGSTOP here; a deadlock or swapping in life) must not
hold its clients forever: past `runner_first_token_timeout` / `runner_token_timeout` the client gets
an OpenAI-shaped error (an error event when streaming), the hung process is killed, and the next
request starts a fresh runner."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from foundry_jupyter.errors import RunnerFailed
from foundry_jupyter.service import processes
from foundry_jupyter.service.processes import SubprocessRunner
from tests.support.streams import last_event, stream_and_act

from .conftest import LONG, TINY
from .test_errors import assert_openai_error

MSG = [{"role": "user", "content": "Hello"}]
LIMIT_S = 2.0


@pytest.fixture
def foundry_config() -> dict:
    return {"runner_first_token_timeout": LIMIT_S, "runner_token_timeout": LIMIT_S, "max_runner_processes": 1}


def _gone(pid: int, timeout: float = 10.0) -> bool:
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


async def test_a_stopped_runner_answers_an_error_in_time_and_is_replaced(http, service):
    assert (await http.get(f"openai/load/{TINY}")).status_code == 200
    pid = service.supervisor.get(TINY).pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        body = {"model": TINY, "messages": MSG, "max_tokens": 3}
        response = await http.post("v1/chat/completions", json=body)
        elapsed = time.monotonic() - started
        error = assert_openai_error(response, 504, code="runner_timeout")
        assert "runner_first_token_timeout" in error["message"]
        assert LIMIT_S <= elapsed < LIMIT_S + 3, elapsed
        assert _gone(pid), "the hung runner was not killed"
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)
    response = await http.post("v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert service.supervisor.get(TINY).pid != pid


@pytest.mark.long_model
async def test_a_runner_stopped_mid_stream_ends_the_stream_with_an_error_event(http, service):
    body = {"model": LONG, "messages": MSG, "max_tokens": 4000, "temperature": 0, "stream": True}
    pid, stopped_at = 0, 0.0

    async def stop() -> None:
        nonlocal pid, stopped_at
        pid = service.supervisor.get(LONG).pid
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()

    events = await stream_and_act(http, body, stop)
    elapsed = time.monotonic() - stopped_at
    try:
        last = last_event(events)
        assert last["error"]["code"] == "runner_timeout", events[-3:]
        assert "runner_token_timeout" in last["error"]["message"]
        assert elapsed < LIMIT_S + 3, elapsed
        assert _gone(pid), "the hung runner was not killed"
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)
    response = await http.post("v1/chat/completions", json={**body, "stream": False, "max_tokens": 2})
    assert response.status_code == 200, response.text


@pytest.mark.skipif(sys.platform == "win32", reason="a unix socket stands in for the runner")
async def test_a_runner_that_listens_but_never_answers_fails_its_start_in_time(tmp_path):
    # A runner stopped (or hung) just after it began listening: the connection is accepted, `info`
    # never answered. Its start, and every request waiting for its model, must end at the start limit.
    sock = tmp_path / "sock"
    listen = (
        "import socket, time\n"
        f"s = socket.socket(socket.AF_UNIX)\ns.bind({str(sock)!r})\ns.listen()\ntime.sleep(60)\n"
    )
    popen = subprocess.Popen([sys.executable, "-c", listen])
    process = SubprocessRunner(popen, str(tmp_path), "unix")
    try:
        started = time.monotonic()
        with pytest.raises(RunnerFailed, match="runner_start_timeout"):
            await asyncio.wait_for(processes._wait_ready("m", process, LIMIT_S), LIMIT_S + 10)
        assert time.monotonic() - started < LIMIT_S + 3
    finally:
        popen.kill()
        popen.wait()
