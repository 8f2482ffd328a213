"""The loopback TCP transport: a runner serves over it, and only to clients that present its secret."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from foundry_jupyter import config
from foundry_jupyter.errors import InvalidRequest
from foundry_jupyter.service import transport, wire
from foundry_jupyter.service.processes import spawn_runner

from .conftest import TINY

INFO = wire.encode({"op": "info"})


@pytest.fixture
def tcp_runner(tiny_model_dir: Path, tmp_path: Path):
    """A runner of the tiny model on loopback TCP: yields (port, secret)."""
    port_file = tmp_path / "port.json"
    secret = transport.new_secret()
    cmd = [sys.executable, "-m", "foundry_jupyter.runner", "--model-path", str(tiny_model_dir)]
    env = dict(os.environ, **{transport.SECRET_ENV: secret})
    proc = subprocess.Popen([*cmd, "--tcp-port-file", str(port_file)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while transport.read_port_file(str(port_file)) is None:
        assert proc.poll() is None and time.monotonic() < deadline, "the runner did not start"
        time.sleep(0.05)
    yield transport.read_port_file(str(port_file)), secret
    proc.terminate()
    proc.wait(timeout=30)


def answer_to(port: int, first: bytes) -> bytes:
    """Everything the runner sends back to a connection that starts with `first` and then asks `info`,
    until it closes the connection or answers."""
    with socket.create_connection((transport.HOST, port), timeout=20) as sock:
        sock.sendall(first + INFO)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def info(port: int, secret: str) -> dict:
    return json.loads(answer_to(port, transport.handshake(secret)))["result"]


def test_the_runner_listens_on_loopback_only(tcp_runner):
    port, _secret = tcp_runner
    listening = [c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}


def test_a_connection_with_the_secret_is_served(tcp_runner):
    port, secret = tcp_runner
    assert info(port, secret)["model_id"]


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"", id="no secret"),
        pytest.param(transport.handshake("0" * transport.SECRET_HEX_CHARS), id="wrong secret"),
        pytest.param(transport.AUTH_PREFIX + b"short\n", id="short secret"),
    ],
)
def test_a_connection_without_the_secret_is_closed_unanswered(tcp_runner, first):
    port, secret = tcp_runner
    assert answer_to(port, first) == b""
    # the refused connections never reached the request handler
    assert info(port, secret)["connections"] == 1


def test_a_connection_that_presents_nothing_is_dropped(tcp_runner):
    port, secret = tcp_runner
    with socket.create_connection((transport.HOST, port), timeout=30) as idle:
        assert info(port, secret)["connections"] == 1  # the silent one does not hold the runner up
        idle.settimeout(transport.HANDSHAKE_TIMEOUT_S + 10)
        assert idle.recv(1) == b""


def test_a_runner_without_a_secret_does_not_listen_on_tcp(tiny_model_dir: Path, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != transport.SECRET_ENV}
    cmd = [sys.executable, "-m", "foundry_jupyter.runner", "--model-path", str(tiny_model_dir)]
    done = subprocess.run(
        [*cmd, "--tcp-port-file", str(tmp_path / "port.json")], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 2 and transport.SECRET_ENV.encode() in done.stderr
    assert not (tmp_path / "port.json").exists()


async def test_spawn_keeps_the_secret_off_the_command_line(tiny_model_dir: Path):
    process, runner_info = await spawn_runner(TINY, tiny_model_dir, None, transport_setting="tcp")
    try:
        assert runner_info["model_id"] == TINY
        assert process.address is not None and process.address.kind == "tcp"
        assert process.secret and process.secret not in " ".join(psutil.Process(process.pid).cmdline())
        reader, writer = await process.open_connection()
        writer.write(INFO)
        assert json.loads(await reader.readline())["result"]["pid"] == process.pid
        writer.close()
    finally:
        await process.stop(5.0)
    assert process.poll() is not None and not os.path.exists(process.workdir)


def test_transport_choice(monkeypatch):
    monkeypatch.delenv(config.ENV_RUNNER_TRANSPORT, raising=False)
    assert transport.choose() == transport.choose("auto")
    assert transport.choose("auto") == ("unix" if transport.unix_sockets_available() else "tcp")
    assert transport.choose("TCP") == "tcp"
    monkeypatch.setenv(config.ENV_RUNNER_TRANSPORT, "tcp")
    assert transport.choose() == "tcp"
    with pytest.raises(InvalidRequest):
        transport.choose("pipe")


@pytest.mark.parametrize("each_transport", ["tcp"], indirect=True)
async def test_the_server_chats_with_a_runner_over_tcp(each_transport, client, service):
    answer = await client.chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "Hello"}], max_tokens=5
    )
    assert answer.usage.completion_tokens > 0 and answer.choices[0].message.content
    [process] = service.supervisor.get(TINY).processes
    assert process.address.kind == "tcp" and process.address.port > 0
    assert not os.path.exists(process.socket_path)
    chunks = await client.chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "Hi"}], max_tokens=5, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    assert text
