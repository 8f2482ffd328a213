"""Idle and half-open connections are closed, as nginx closes them (client_header_timeout,
keepalive_timeout, client_body_timeout): a real `jupyter server` process with the extension, and raw
sockets to it that send nothing, half a request's headers, half a body, or nothing after an answer."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyter(tmp_path: Path, tiny_cache_dir: Path) -> Iterator[tuple[int, str]]:
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        "--allow-root",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={tmp_path}",
        "--ServerApp.jpserver_extensions=foundry_jupyter=True",
        f"--FoundryApp.client_header_timeout={HEADER_TIMEOUT_S}",
        f"--FoundryApp.client_body_timeout={BODY_TIMEOUT_S}",
    ]
    env = {**os.environ, "FOUNDRY_JUPYTER_CACHE": str(tiny_cache_dir), "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                url = f"http://127.0.0.1:{port}/foundry/openai/status"
                if httpx.get(url, headers={"Authorization": f"token {token}"}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield port, token
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (what it sends before that is read and dropped)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


def test_half_open_and_idle_connections_are_closed(jupyter):
    port, token = jupyter
    head = f"POST /foundry/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    sockets = {
        "silent": [socket.create_connection(("127.0.0.1", port)) for _ in range(20)],
        "half headers": [],
        "kept alive": [],
        "half body": [],
    }
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(head.encode())
        sockets["half headers"].append(s)
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(
            f"GET /foundry/openai/status HTTP/1.1\r\nHost: x\r\nAuthorization: token {token}\r\n\r\n".encode()
        )
        sockets["kept alive"].append(s)
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"{head}Authorization: token {token}\r\nContent-Length: 1000\r\n\r\n{{".encode())
        sockets["half body"].append(s)
    started = time.monotonic()
    try:
        for kind, group in sockets.items():
            limit = BODY_TIMEOUT_S if kind == "half body" else HEADER_TIMEOUT_S
            left = [s for s in group if not _closed_within(s, limit + 3 - (time.monotonic() - started))]
            assert not left, f"{len(left)} of {len(group)} {kind!r} connections still open"
        # The server still answers.
        status = httpx.get(
            f"http://127.0.0.1:{port}/foundry/openai/status", headers={"Authorization": f"token {token}"}
        )
        assert status.status_code == 200
    finally:
        for group in sockets.values():
            for s in group:
                s.close()
