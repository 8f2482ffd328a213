"""`jupyter foundry service start|status|ps|stop` and `model load|unload` against a real server process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import psutil
import pytest

TINY = "tiny-generic-cpu:1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cli_env(tmp_path, foundry_cache):
    env = dict(os.environ)
    env.update(
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        FOUNDRY_JUPYTER_CACHE=str(foundry_cache),
    )
    env.pop("FOUNDRY_JUPYTER_URL", None)
    yield env
    # whatever happens in the test, no server or runner outlives it
    state = tmp_path / "runtime" / "foundry-service.json"
    if state.exists():
        pid = json.loads(state.read_text())["pid"]
        if psutil.pid_exists(pid):
            proc = psutil.Process(pid)
            for child in proc.children(recursive=True):
                child.kill()
            proc.kill()


def cli(env, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "foundry_jupyter.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=env["JUPYTER_RUNTIME_DIR"].rsplit("/", 1)[0],
    )


def test_service_lifecycle_through_the_cli(cli_env):
    before = cli(cli_env, "service", "status")
    assert before.returncode == 1 and "not running" in before.stdout

    port = free_port()
    started = cli(cli_env, "service", "start", "--port", str(port), "-o", "json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    assert info["endpoint"] == f"http://127.0.0.1:{port}/foundry/"
    assert info["alreadyRunning"] is False
    server_pid = info["pid"]

    again = cli(cli_env, "service", "start")
    assert again.returncode == 0 and "already running" in again.stdout

    status = cli(cli_env, "service", "status")
    assert status.returncode == 0
    assert f"running on http://127.0.0.1:{port}/foundry/" in status.stdout

    assert "No models are loaded" in cli(cli_env, "service", "ps").stdout
    loaded = cli(cli_env, "model", "load", "tiny", "--ttl", "120")
    assert loaded.returncode == 0, loaded.stderr
    assert f"Loaded {TINY}" in loaded.stdout
    ps = cli(cli_env, "service", "ps", "-o", "json")
    [model] = json.loads(ps.stdout)
    assert model["id"] == TINY and model["ttlSeconds"] == 120
    runner_pid = model["pid"]
    table = cli(cli_env, "service", "ps").stdout
    assert TINY in table and "MiB" in table

    unknown = cli(cli_env, "model", "load", "no-such-model")
    assert unknown.returncode == 1 and "no-such-model" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    assert "Unloaded" in cli(cli_env, "model", "unload", "tiny").stdout
    assert "was not loaded" in cli(cli_env, "model", "unload", "tiny").stdout
    cli(cli_env, "model", "load", "tiny")

    stopped = cli(cli_env, "service", "stop")
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert not _running(server_pid)
    assert not _running(runner_pid)
    assert cli(cli_env, "service", "status").returncode == 1


def test_commands_say_when_no_service_runs(cli_env):
    for args in (("service", "ps"), ("model", "load", "tiny"), ("model", "unload", "--all")):
        result = cli(cli_env, *args)
        assert result.returncode == 1
        assert "not running" in result.stderr and "service start" in result.stderr
    assert cli(cli_env, "service", "stop").returncode == 0


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_runners_exit_when_their_server_is_killed(cli_env):
    started = cli(cli_env, "service", "start", "--port", str(free_port()), "-o", "json")
    assert started.returncode == 0, started.stderr
    server = psutil.Process(json.loads(started.stdout)["pid"])
    assert cli(cli_env, "model", "load", "tiny").returncode == 0
    [runner_pid] = [m["pid"] for m in json.loads(cli(cli_env, "service", "ps", "-o", "json").stdout)]
    runner = psutil.Process(runner_pid)
    server.kill()
    server.wait(timeout=10)
    runner.wait(timeout=30)  # raises TimeoutExpired if the runner outlives its server
    assert not _running(runner_pid)
