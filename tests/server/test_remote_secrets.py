"""An engine key set in Jupyter config never shows: a real server started with --debug (which logs the
whole config it loads) and a key planted in its config file; every route's answer and all of the
server's output are searched for it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from foundry_jupyter.server.handlers import ROUTES
from tests.support.fake_engine import JsonHandler, serve

from .test_remote_peers import REPO, SecondServer

KEY = "sk-planted-DEBUG-5e1d0c"
PLAIN = "sk-plaintext-DEBUG-77aa"
MSG = [{"role": "user", "content": "hi"}]


class _KeyedEngine(JsonHandler):
    """A minimal OpenAI-compatible engine that answers only with the right key."""

    keys_seen: ClassVar[list[str | None]] = []

    def _refused(self) -> bool:
        type(self).keys_seen.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") == f"Bearer {KEY}":
            return False
        self.send_json(401, {"error": {"message": "bad key", "type": "invalid_request_error", "code": None}})
        return True

    def do_GET(self) -> None:
        if not self._refused():
            self.send_json(200, {"object": "list", "data": [{"id": "m1", "object": "model"}]})

    def do_POST(self) -> None:
        body = self.read_json()
        if self._refused():
            return
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        if self.path.endswith("/embeddings"):
            data = [{"object": "embedding", "index": 0, "embedding": [1.0, 0.0]}]
            self.send_json(200, {"object": "list", "model": body["model"], "data": data, "usage": usage})
            return
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            self.send_json(200, {"id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                                 "choices": [choice], "usage": usage})  # fmt: skip
            return
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                 "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}  # fmt: skip
        self.send_events([chunk])


@pytest.fixture
def keyed_engine():
    _KeyedEngine.keys_seen = []
    with serve(_KeyedEngine) as url:
        yield f"{url}/v1"


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
