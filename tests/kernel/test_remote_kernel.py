"""The kernel-resident backend with a remote engine: `%foundry run ENGINE/MODEL` asks the engine
directly (no server), and `%foundry list` / `%foundry cache` show the engine's models."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

from tests.support.fake_engine import JsonHandler, serve

KEY = "sk-kernel-SECRET-9"


class _Engine(JsonHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {KEY}":
            return True
        self.send_json(
            401, {"error": {"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key"}}
        )
        return False

    def do_GET(self) -> None:
        if self._authorized():
            self.send_json(200, {"object": "list", "data": [{"id": "org/chat-model", "object": "model"}]})

    def do_POST(self) -> None:
        body = self.read_json()
        if not self._authorized():
            return
        type(self).seen.append(body)
        base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            for text in ("Remote", " answer")
        ]
        last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        usage = {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        }
        self.send_events([*chunks, last, usage])


@pytest.fixture
def engine(cache_copy, monkeypatch):
    monkeypatch.setenv("KERNEL_ENGINE_KEY", KEY)
    _Engine.seen = []
    with serve(_Engine) as url:
        gpu = {"name": "gpu", "base_url": url, "api_key_env": "KERNEL_ENGINE_KEY"}
        saved = {"engines": [{**gpu, "aliases": {"chatty": "org/chat-model"}}]}
        (cache_copy.parent / "engines.json").write_text(json.dumps(saved))
        yield url


def test_run_asks_the_engine_directly(shell: Any, magics: Any, engine: Any) -> None:
    shell.run_line_magic("foundry", "run gpu/org/chat-model Hello there")
    assert "Remote answer" in "".join(shell.display_pub.texts())
    assert _Engine.seen[-1]["model"] == "org/chat-model" and _Engine.seen[-1]["stream"] is True
    assert _Engine.seen[-1]["messages"][-1] == {"role": "user", "content": "Hello there"}
    result = magics.chat("And again?", model="gpu/org/chat-model")
    assert result.text == "Remote answer" and result.usage.completion_tokens == 2


def test_list_and_cache_show_the_engines_models(shell: Any, engine: Any) -> None:
    import pandas as pd

    catalog = shell.run_line_magic("foundry", "list").set_index("id")
    row = catalog.loc["gpu/org/chat-model"]
    assert (row["device"], row["execution_provider"], row["engine"], row["health"]) == (
        "remote",
        "gpu",
        "gpu",
        "ok",
    )
    assert row["latency_ms"] >= 0 and bool(row["cached"])
    assert pd.isna(catalog.loc["tiny-generic-cpu:1"]["engine"])
    cache = shell.run_line_magic("foundry", "cache").set_index("id")
    assert cache.loc["gpu/org/chat-model"]["device"] == "remote"
    assert KEY not in catalog.to_string() + cache.to_string()


def test_a_wrong_key_is_one_line_naming_the_engine(shell: Any, engine: Any, monkeypatch) -> None:
    from foundry_jupyter.kernel.magics import FoundryCellError

    monkeypatch.setenv("KERNEL_ENGINE_KEY", "sk-wrong")
    with pytest.raises(FoundryCellError) as info:
        shell.run_line_magic("foundry", "run gpu/org/chat-model Hello")
    assert str(info.value) == "engine 'gpu': bad key"


def test_an_engine_alias_runs_and_lists_like_a_local_one(shell: Any, engine: Any, cache_copy) -> None:
    from foundry_jupyter.kernel.magics import FoundryCellError

    shell.run_line_magic("foundry", "run chatty Hello there")
    assert "Remote answer" in "".join(shell.display_pub.texts())
    assert _Engine.seen[-1]["model"] == "org/chat-model"
    catalog = shell.run_line_magic("foundry", "list").set_index("id")
    assert catalog.loc["gpu/org/chat-model"]["alias"] == "chatty"

    saved = json.loads((cache_copy.parent / "engines.json").read_text())
    saved["engines"][0]["aliases"] = {"tiny": "org/chat-model"}  # the local tiny model's alias
    (cache_copy.parent / "engines.json").write_text(json.dumps(saved))
    with pytest.raises(FoundryCellError) as info:
        shell.run_line_magic("foundry", "run tiny Hello")
    assert "'tiny'" in str(info.value) and "'gpu'" in str(info.value) and "local model" in str(info.value)
