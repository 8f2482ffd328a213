"""`jupyter foundry engine add|list|remove`: the engines file, health from a real engine on loopback."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from foundry_jupyter.cli import main
from foundry_jupyter.errors import InvalidRequest
from tests.support.fake_engine import JsonHandler, serve

KEY = "sk-cli-SECRET-42"


class _Models(JsonHandler):
    chats: ClassVar[list[dict]] = []

    def do_GET(self) -> None:
        if self.headers.get("Authorization") == f"Bearer {KEY}" and self.path == "/v1/models":
            self.send_json(200, {"data": [{"id": "m1"}, {"id": "org/m2"}]})
        else:
            self.send_json(401, {"error": {"message": "no"}})

    def do_POST(self) -> None:
        body = self.read_json()
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self.send_json(401, {"error": {"message": "bad key", "code": None}})
            return
        _Models.chats.append(body)
        base = {"id": "c", "created": 1, "model": body["model"]}
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": "Remote answer"},
                "finish_reason": "stop",
            }
            usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            self.send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        self.send_events(
            {**base, "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            for text in ("Remote", " answer")
        )  # fmt: skip


@pytest.fixture
def engine_url():
    with serve(_Models) as url:
        yield url


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


def test_model_list_and_info_show_an_engines_models_beside_local_ones(home, engine_url, capsys, monkeypatch):
    monkeypatch.setenv("CLI_ENGINE_KEY", KEY)
    code, out, err = run(
        capsys, "engine", "add", "gpu", "--base-url", engine_url, "--api-key-env", "CLI_ENGINE_KEY",
        "--alias", "small=m1",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((home / "cache" / "engines.json").read_text())["engines"][0]["aliases"] == {
        "small": "m1"
    }

    code, out, _ = run(capsys, "model", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[-2:] == ["Engine", "Health"]
    assert any(line.split()[:2] == ["tiny", "CPU"] for line in lines)  # the local catalog is still there
    remote = next(line for line in lines if "gpu/m1" in line)
    assert (
        remote.split()[:2] == ["small", "remote"]
        and " gpu " in remote
        and "ok, " in remote
        and " ms" in remote
    )
    assert any(line.split()[:2] == ["gpu/org/m2", "remote"] for line in lines)

    code, out, _ = run(capsys, "model", "list", "--filter", "device=remote", "-o", "json")
    models = json.loads(out)["models"]
    assert [m["id"] for m in models] == ["gpu/m1", "gpu/org/m2"]
    assert models[0]["alias"] == "small" and models[0]["health"] == "ok" and models[0]["latencyMs"] >= 0
    assert KEY not in out
    code, out, _ = run(capsys, "model", "list", "--filter", "alias=tiny*", "-o", "json")
    assert all(not m.get("remote") for m in json.loads(out)["models"])

    code, out, _ = run(capsys, "model", "info", "small", "-o", "json")
    assert code == 0 and json.loads(out)["id"] == "gpu/m1" and json.loads(out)["engine"] == "gpu"
    code, out, _ = run(capsys, "model", "info", "gpu/org/m2")
    assert code == 0 and "remote" in out and "gpu at " in out
    code, out, err = run(capsys, "model", "run", "small", "hi", "--max-tokens", "5")
    assert code == 0 and out == "Remote answer\n", err
    assert _Models.chats[-1] == {"model": "m1", "messages": [{"role": "user", "content": "hi"}],
                                 "stream": True, "max_tokens": 5}  # fmt: skip
    code, out, _ = run(capsys, "model", "run", "gpu/org/m2", "hi", "-o", "json")
    answer = json.loads(out)
    assert (answer["model"], answer["text"], answer["usage"]["completion_tokens"]) == (
        "gpu/org/m2",
        "Remote answer",
        2,
    )
    assert _Models.chats[-1]["model"] == "org/m2"
    monkeypatch.setenv("CLI_ENGINE_KEY", "sk-wrong")
    code, _, err = run(capsys, "model", "run", "small", "hi")
    assert code == 1 and err.startswith("Error: engine 'gpu'") and len(err.strip().splitlines()) == 1


def test_an_alias_a_local_model_has_is_refused(home, engine_url, capsys) -> None:
    code, _, err = run(capsys, "engine", "add", "gpu", "--base-url", engine_url, "--alias", "tiny=m1")
    assert code == 1 and "'tiny'" in err and "local model" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "engine", "add", "gpu", "--base-url", engine_url, "--alias", "nope")
    assert code == 1 and "ALIAS=MODEL" in err
    assert run(capsys, "engine", "add", "a", "--base-url", engine_url, "--alias", "m=m1")[0] == 0
    code, _, err = run(capsys, "engine", "add", "b", "--base-url", engine_url, "--alias", "M=m1")
    assert code == 1 and "engine 'a'" in err

    # A local model cannot take an alias an engine already gives.
    from foundry_jupyter.config import defaults
    from foundry_jupyter.models.manager import ModelManager

    with pytest.raises(InvalidRequest) as info:
        ModelManager(defaults()).register(home, "m")
    assert info.value.code == "alias_conflict" and "'a'" in info.value.message
