"""An engine key set in Jupyter config never shows: a real server started with --debug (which logs the
whole config it loads) and a key planted in its config file; every route's answer and all of the
server's output are searched for it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from foundry_jupyter.server.handlers import ROUTES

from .test_remote_peers import REPO, SecondServer

KEY = "sk-planted-DEBUG-5e1d0c"
PLAIN = "sk-plaintext-DEBUG-77aa"
MSG = [{"role": "user", "content": "hi"}]


class _KeyedEngine(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible engine that answers only with the right key."""

    protocol_version = "HTTP/1.1"
    keys_seen: ClassVar[list[str | None]] = []

    def _json(self, status: int, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refused(self) -> bool:
        type(self).keys_seen.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") == f"Bearer {KEY}":
            return False
        self._json(401, {"error": {"message": "bad key", "type": "invalid_request_error", "code": None}})
        return True

    def do_GET(self) -> None:
        if not self._refused():
            self._json(200, {"object": "list", "data": [{"id": "m1", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self._refused():
            return
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        if self.path.endswith("/embeddings"):
            data = [{"object": "embedding", "index": 0, "embedding": [1.0, 0.0]}]
            self._json(200, {"object": "list", "model": body["model"], "data": data, "usage": usage})
            return
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            self._json(200, {"id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                             "choices": [choice], "usage": usage})  # fmt: skip
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                 "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}  # fmt: skip
        self.wfile.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def keyed_engine():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeyedEngine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _KeyedEngine.keys_seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _config(url: str) -> str:
    return (
        "from pydantic import SecretStr\n\n"
        "c.ServerApp.jpserver_extensions.update({'foundry_jupyter': True})\n"
        "c.FoundryApp.remote_engines = [\n"
        f"    {{'name': 'keyed', 'base_url': '{url}', 'api_key': SecretStr('{KEY}'),"
        " 'aliases': {'short': 'm1'}},\n"
        f"    {{'name': 'plain', 'base_url': '{url}', 'api_key': '{PLAIN}'}},\n"
        "]\n"
    )


def _answers(server: SecondServer) -> list[str]:
    """Every GET route (models named as the engine's), chat, streamed chat and embeddings."""
    texts = []
    root = server.url.removesuffix("v1")
    with httpx.Client(base_url=root, headers={"Authorization": f"Bearer {server.token}"}, timeout=60) as http:
        for route in ROUTES:
            if "get" not in route.operations or "{job_id}" in route.path:
                continue
            answer = http.get(route.path.replace("{name}", "keyed/m1"))
            if answer.headers.get("Content-Type", "").startswith("application/zip"):
                with zipfile.ZipFile(io.BytesIO(answer.content)) as bundle:
                    texts += [bundle.read(n).decode("utf-8", "replace") for n in bundle.namelist()]
            else:
                texts.append(answer.text)
        for model in ("keyed/m1", "short"):
            for stream in (False, True):
                chat = http.post(
                    "v1/chat/completions", json={"model": model, "messages": MSG, "stream": stream}
                )
                assert chat.status_code == 200, chat.text
                texts.append(chat.text)
            vectors = http.post("v1/embeddings", json={"model": model, "input": "hi"})
            assert vectors.status_code == 200, vectors.text
            texts.append(vectors.text)
        engines = http.get("engines").json()["engines"]
        assert [(e["name"], e["health"], e["hasKey"]) for e in engines] == [("keyed", "ok", True)]
        texts.append(json.dumps(engines))
    return texts


def test_a_key_in_jupyter_config_never_shows_with_debug_on(tmp_path: Path, tiny_cache_dir, keyed_engine):
    workdir = tmp_path / "second"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "jupyter_server_config.py").write_text(_config(keyed_engine))
    # Enabled from the config file, as a deployment would: Jupyter then dumps the config at DEBUG.
    server = SecondServer(workdir, tiny_cache_dir, ("--debug",), enable_in_config=True).start()
    try:
        texts = _answers(server)
    finally:
        server.stop()
    log = (workdir / "server.log").read_text()
    # Jupyter did dump its config, with the engines in it; the key travelled, to the engine only.
    assert "Config changed" in log and "SecretStr('**********')" in log and "'keyed'" in log
    assert _KeyedEngine.keys_seen.count(f"Bearer {KEY}") >= 6
    assert KEY not in log and not any(KEY in text for text in texts)
    # A plain-text key in the config cannot be kept out of Jupyter's dump: that engine is left out, saying so.
    assert "remote engine 'plain' left out: its api_key is plain text" in log

    shown = subprocess.run(
        [sys.executable, "-m", "jupyter_server", "--show-config"],
        env={"JUPYTER_CONFIG_DIR": str(workdir / "config"), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "'keyed'" in shown.stdout and KEY not in shown.stdout + shown.stderr
