"""How a runner's answer travels to the server: straight from the generating thread, merged when the
reader falls behind, nothing lost either way."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from foundry_jupyter.runner.serve import BlockingOut
from foundry_jupyter.service import transport, wire


def read_lines(sock: socket.socket, count: int) -> list[dict]:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed early"
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out = BlockingOut(ours, min_interval_s=0)  # only the reader's pace holds text back
    ours.close()  # BlockingOut holds its own descriptor
    yield out, theirs
    out.close()
    theirs.close()


def test_text_goes_out_at_once_while_the_reader_keeps_up(pair):
    out, reader = pair
    for piece in ("Hel", "lo", "!"):
        out.send({"t": piece})
        assert read_lines(reader, 1) == [{"t": piece}]


def test_text_is_merged_while_the_reader_is_behind(pair):
    out, reader = pair
    out.send({"t": "a"})  # the reader is idle: sent
    out.send({"t": "b"})  # "a" is unread: held
    out.send({"t": "c"})
    assert read_lines(reader, 1) == [{"t": "a"}]
    done = {"finish_reason": "stop", "usage": None}
    out.send({"t": "d", "done": done})  # the end goes out at once, with everything held
    assert read_lines(reader, 1) == [{"t": "bcd", "done": done}]


def test_held_text_goes_out_before_an_error(pair):
    out, reader = pair
    out.send({"t": "a"})
    out.send({"t": "b"})
    error = {"class": "RunnerFailed", "message": "boom", "status": 500}
    out.send({"error": error})
    assert read_lines(reader, 3) == [{"t": "a"}, {"t": "b"}, {"error": error}]


def test_text_is_merged_within_the_minimum_interval():
    ours, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with reader:
        out = BlockingOut(ours, min_interval_s=0.2)
        ours.close()
        out.send({"t": "a"})  # the first text goes out at once
        assert read_lines(reader, 1) == [{"t": "a"}]
        out.send({"t": "b"})  # read, but "a" left less than 0.2 s ago: held
        time.sleep(0.25)
        out.send({"t": "c"})
        assert read_lines(reader, 1) == [{"t": "bc"}]
        out.close()


def test_a_send_to_a_closed_reader_raises(pair):
    out, reader = pair
    reader.close()
    with pytest.raises(OSError):
        for _ in range(3):  # the first send may still land in the buffer
            out.send({"t": "x", "done": {}})


@pytest.fixture(params=["unix", "tcp"])
def runner(request: pytest.FixtureRequest, tiny_long_dir: Path, tmp_path: Path):
    """A runner of the long tiny model, listening on a unix socket or on loopback TCP; yields a
    function that opens an authenticated connection to it."""
    cmd = [sys.executable, "-m", "foundry_jupyter.runner", "--model-path", str(tiny_long_dir)]
    env = dict(os.environ)
    if request.param == "unix":
        where = str(tmp_path / "sock")
        proc = subprocess.Popen([*cmd, "--socket", where], stderr=subprocess.DEVNULL)
    else:
        where = str(tmp_path / "port.json")
        env[transport.SECRET_ENV] = secret = transport.new_secret()
        proc = subprocess.Popen([*cmd, "--tcp-port-file", where], stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while not os.path.exists(where):
        assert proc.poll() is None and time.monotonic() < deadline, "the runner did not start"
        time.sleep(0.05)

    def connect() -> socket.socket:
        if request.param == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(where)
        else:
            sock = socket.create_connection((transport.HOST, transport.read_port_file(where)))
            sock.sendall(transport.handshake(secret))
        return sock

    yield connect
    proc.terminate()
    proc.wait(timeout=30)


STORY = {
    "op": "chat",
    "messages": [{"role": "user", "content": "Tell me a long story."}],
    "params": {"max_tokens": 1500, "temperature": 0.0},
}


def ask(connect, *, wait_before_reading: float) -> list[dict]:
    with connect() as sock:
        sock.sendall(wire.encode(STORY))
        time.sleep(wait_before_reading)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> list[dict]:
    """Messages up to the final one (`done`, `result` or `error`); the runner keeps the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "the runner closed the connection before its final message"
        data += chunk
        if data.endswith(b"\n"):
            last = json.loads(data.rsplit(b"\n", 2)[-2])
            if {"done", "result", "error"} & last.keys():
                return [json.loads(line) for line in data.splitlines()]


def test_a_slow_reader_gets_the_same_answer_in_fewer_messages(runner):
    eager = ask(runner, wait_before_reading=0)
    slow = ask(runner, wait_before_reading=1.0)
    for messages in (eager, slow):
        assert "done" in messages[-1] and all("error" not in m for m in messages)
    tokens = slow[-1]["done"]["usage"]["completion_tokens"]
    assert tokens == eager[-1]["done"]["usage"]["completion_tokens"] > 100
    assert "".join(m["t"] for m in slow) == "".join(m["t"] for m in eager)
    # Held text rides on the next token's message: a second of not reading merges most of them.
    assert len(slow) < tokens / 2


def test_one_connection_carries_requests_one_after_another(runner):
    with runner() as sock:
        answers = []
        for content in ("Hello.", "Tell me a story."):
            request = {
                **STORY,
                "messages": [{"role": "user", "content": content}],
                "params": {"max_tokens": 5},
            }
            sock.sendall(wire.encode(request))
            answers.append(read_answer(sock))
        assert all(a[-1]["done"]["usage"]["completion_tokens"] > 0 for a in answers)
        sock.sendall(wire.encode({"op": "info"}))
        [info] = read_answer(sock)
    assert info["result"]["completed"] == 2 and info["result"]["connections"] == 1
