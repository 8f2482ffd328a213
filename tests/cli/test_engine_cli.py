"""`jupyter foundry engine add|list|remove`: the engines file, health from a real engine on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from foundry_jupyter.cli import main

KEY = "sk-cli-SECRET-42"


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == f"Bearer {KEY}" and self.path == "/v1/models"
        body = json.dumps({"data": [{"id": "m1"}, {"id": "org/m2"}]} if ok else {"error": {"message": "no"}})
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def engine_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FOUNDRY_JUPYTER_CACHE", str(tmp_path / "cache" / "models"))
    return tmp_path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_remove(home, engine_url, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CLI_ENGINE_KEY", KEY)
    code, out, _ = run(
        capsys, "engine", "add", "gpu", "--base-url", engine_url, "--api-key-env", "CLI_ENGINE_KEY"
    )
    assert code == 0 and "gpu/MODEL" in out
    saved = (home / "cache" / "engines.json").read_text()
    assert "CLI_ENGINE_KEY" in saved and KEY not in saved

    code, out, _ = run(capsys, "engine", "list", "-o", "json")
    row = json.loads(out)["engines"][0]
    assert (row["name"], row["health"], row["models"], row["hasKey"]) == ("gpu", "ok", ["m1", "org/m2"], True)
    assert row["latencyMs"] >= 0 and KEY not in out

    monkeypatch.delenv("CLI_ENGINE_KEY")
    code, out, _ = run(capsys, "engine", "list")
    assert code == 0 and "unauthorized" in out and "$CLI_ENGINE_KEY (unset)" in out

    code, out, _ = run(capsys, "engine", "list", "--no-check", "-o", "json")
    assert json.loads(out)["engines"][0]["health"] == "unknown"

    assert run(capsys, "engine", "remove", "gpu")[0] == 0
    code, out, _ = run(capsys, "engine", "list")
    assert code == 0 and "No engines" in out


def test_configured_models_and_a_down_engine(home, capsys) -> None:
    assert (
        run(capsys, "engine", "add", "off", "--base-url", "http://127.0.0.1:9/v1", "--models", "a,b")[0] == 0
    )
    code, out, _ = run(capsys, "engine", "list", "-o", "json")
    row = json.loads(out)["engines"][0]
    assert code == 0 and (row["health"], row["models"], row["latencyMs"]) == ("down", ["a", "b"], None)
    assert "'off'" in row["error"]


def test_mistakes_are_one_line(home, capsys) -> None:
    code, _, err = run(capsys, "engine", "add", "bad name", "--base-url", "http://x")
    assert (
        code == 1
        and err.startswith("Error: ")
        and "engine name" in err
        and len(err.strip().splitlines()) == 1
    )
    code, _, err = run(capsys, "engine", "add", "ok", "--base-url", "gpu1:8000")
    assert code == 1 and "base URL" in err
    code, _, err = run(capsys, "engine", "remove", "nope")
    assert code == 1 and "No engine named 'nope'" in err
