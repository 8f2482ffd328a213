"""Leftovers: the work folders of runners whose Jupyter server was killed are removed at the next
start, and a stream cut by a forced unload or a cache removal says the model was unloaded."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.streams import last_event, stream_and_act

from .conftest import LONG
from .test_reliability_sockets import _free_port

MSG = [{"role": "user", "content": "Hello"}]


def _workdirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("fj-runner-*"))


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch) -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.fixture
def killed_server_leftovers(private_tmp: Path, tmp_path: Path, tiny_cache_dir: Path) -> list[Path]:
    """Start `jupyter server` with the extension, load a model, SIGKILL the server: its runner exits
    by itself and leaves its work folder behind."""
    port, token = _free_port(), "t0k3n"
    cmd = [
        sys.executable, "-m", "jupyter_server", "--allow-root", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
        "--ServerApp.jpserver_extensions=foundry_jupyter=True",
    ]  # fmt: skip
    env = {**os.environ, "FOUNDRY_JUPYTER_CACHE": str(tiny_cache_dir), "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/foundry/openai/load/tiny"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(url, headers={"Authorization": f"token {token}"}, timeout=60).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        runners = [p for p in psutil.Process(proc.pid).children() if "foundry_jupyter.runner" in p.cmdline()]
        assert runners
        proc.kill()
        proc.wait()
        psutil.wait_procs(runners, timeout=15)  # a runner stops once its server is gone
    finally:
        if proc.poll() is None:
            proc.kill()
    left = _workdirs(private_tmp)
    assert left, "the killed server left no work folder to clean (nothing to test)"
    return left


def test_work_folders_of_a_killed_server_are_removed_at_the_next_start(
    killed_server_leftovers, private_tmp, jp_serverapp, http_server
):
    mine = private_tmp / "fj-runner-someone-elses"
    mine.mkdir()  # not named by a dead server: kept
    deadline = time.monotonic() + 10
    while any(p.exists() for p in killed_server_leftovers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(p.exists() for p in killed_server_leftovers), _workdirs(private_tmp)
    assert mine.exists()


async def _stream_then(http, action) -> dict:
    body = {"model": LONG, "messages": MSG, "max_tokens": 4000, "temperature": 0, "stream": True}
    events = await stream_and_act(http, body, action)
    assert "data: [DONE]" not in events
    return last_event(events)["error"]


@pytest.mark.long_model
async def test_a_forced_unload_mid_stream_says_the_model_was_unloaded(http):
    async def unload() -> None:
        assert (await http.get(f"openai/unload/{LONG}?force=true")).status_code == 200

    error = await _stream_then(http, unload)
    assert error["code"] == "model_unloaded", error
    assert "unloaded" in error["message"] and "unexpectedly" not in error["message"]


@pytest.mark.long_model
async def test_a_cache_removal_mid_stream_says_the_model_was_unloaded(http):
    async def remove() -> None:
        assert (await http.delete(f"cache/{LONG}")).status_code == 200

    error = await _stream_then(http, remove)
    assert error["code"] == "model_unloaded", error
    assert "unloaded" in error["message"]
