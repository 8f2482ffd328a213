"""Remote engine configuration: parsing, the engines file (never a key), names and listings."""

from __future__ import annotations

import json

import pytest

from foundry_jupyter.errors import InvalidRequest
from foundry_jupyter.models import view
from foundry_jupyter.models.engines import (
    EngineFile,
    EngineListing,
    listing_from_answer,
    merge_engines,
    parse_engine,
    split_name,
)


def test_foundry_register_body_and_camel_case_are_accepted() -> None:
    foundry = parse_engine(
        {"TypeName": "deepseek", "ModelName": "deepseek-chat", "BaseUri": "https://x.test/v1"}
    )
    assert (foundry.name, foundry.models, foundry.api_base) == (
        "deepseek",
        ("deepseek-chat",),
        "https://x.test/v1",
    )
    camel = parse_engine({"name": "vllm", "baseUrl": "http://gpu1:8000/", "apiKeyEnv": "K", "models": "a, b"})
    assert camel.api_base == "http://gpu1:8000/v1" and camel.models == ("a", "b") and camel.api_key_env == "K"


@pytest.mark.parametrize(
    "data",
    [
        {"name": "bad name", "base_url": "http://x"},
        {"name": "ok", "base_url": "ftp://x"},
        {"name": "ok"},
        {"name": "ok", "base_url": "http://x", "surprise": 1},
        "not an object",
    ],
)
def test_bad_engines_are_refused_with_the_reason(data) -> None:
    with pytest.raises(InvalidRequest):
        parse_engine(data)


def test_the_key_comes_from_the_environment_first_and_is_never_saved_or_shown(tmp_path, monkeypatch) -> None:
    engine = parse_engine(
        {"name": "e", "base_url": "http://u:pw@h:1/v1", "api_key_env": "E_KEY", "api_key": "cfg-secret"}
    )
    assert engine.key({}) == "cfg-secret"
    monkeypatch.setenv("E_KEY", "env-secret")
    assert engine.key() == "env-secret" and engine.headers() == {"Authorization": "Bearer env-secret"}
    assert "secret" not in repr(engine)
    shown = json.dumps(view.engine_row(engine, EngineListing("e")))
    assert "secret" not in shown and "pw" not in shown and '"hasKey": true' in shown
    file = EngineFile(tmp_path / "engines.json")
    file.add(engine)
    assert "secret" not in file.path.read_text()
    assert file.load()[0].api_key_env == "E_KEY" and file.load()[0].api_key is None


def test_the_file_adds_replaces_and_removes(tmp_path) -> None:
    file = EngineFile(tmp_path / "engines.json")
    file.add(parse_engine({"name": "a", "base_url": "http://h:1"}))
    file.add(parse_engine({"name": "A", "base_url": "http://h:2"}))
    assert [e.base_url for e in file.load()] == ["http://h:2"]
    assert file.remove("a").name == "A" and file.load() == []
    with pytest.raises(InvalidRequest):
        file.remove("a")


def test_configured_engines_win_over_saved_ones() -> None:
    saved = [parse_engine({"name": "x", "base_url": "http://saved"})]
    configured = [parse_engine({"name": "X", "base_url": "http://configured"})]
    assert [e.base_url for e in merge_engines(configured, saved)] == ["http://configured"]


def test_names_split_at_the_first_slash_for_known_engines_only() -> None:
    assert split_name("vllm-a/meta-llama/Llama-3.1-8B", ["vllm-a"]) == ("vllm-a", "meta-llama/Llama-3.1-8B")
    assert split_name("VLLM-A/m", ["vllm-a"]) == ("vllm-a", "m")
    assert split_name("other/m", ["vllm-a"]) is None
    assert split_name("vllm-a/", ["vllm-a"]) is None
    assert split_name("tiny", ["vllm-a"]) is None


def test_listings_say_health_and_keep_configured_models() -> None:
    engine = parse_engine({"name": "e", "base_url": "http://h", "models": ["b"]})
    ok = listing_from_answer(engine, 200, {"data": [{"id": "a"}, {"id": "b", "max_model_len": 8}]}, 12.34)
    assert (ok.health, ok.model_ids(), ok.latency_ms) == ("ok", ["b"], 12.3)
    assert listing_from_answer(engine, 401, None, 1).health == "unauthorized"
    assert listing_from_answer(engine, 200, ["not", "a", "list"], 1).health == "error"
    down = listing_from_answer(engine, None, None, 0, error="refused")
    assert (down.health, down.model_ids(), down.latency_ms) == ("down", ["b"], None)
    row = view.remote_catalog_rows(engine, ok)[0]
    assert row["id"] == "e/b" and row["runtime"] == {"deviceType": "remote", "executionProvider": "e"}
    assert (row["contextLength"], row["health"], row["engine"], row["cached"]) == (8, "ok", "e", True)
    assert view.remote_cache_rows(engine, ok)[0]["device"] == "remote"


def test_aliases_parse_from_pairs_and_resolve_without_case() -> None:
    from foundry_jupyter.models.engines import find_model

    engine = parse_engine({"name": "gpu", "base_url": "http://x", "aliases": "llama=meta/Llama-3, q=qwen"})
    same = parse_engine({"name": "gpu", "base_url": "http://x", "aliases": ["llama=meta/Llama-3", "q=qwen"]})
    assert engine.aliases == same.aliases == {"llama": "meta/Llama-3", "q": "qwen"}
    assert engine.to_file()["aliases"] == engine.aliases and engine.public()["aliases"] == engine.aliases
    hit = find_model("LLAMA", [engine])
    assert hit is not None and (hit.engine.name, hit.model, hit.alias) == ("gpu", "meta/Llama-3", "llama")
    assert find_model("gpu/meta/Llama-3", [engine]).alias is None
    assert find_model("other", [engine]) is None
    row = view.remote_catalog_rows(engine, EngineListing("gpu", [{"id": "meta/Llama-3"}, {"id": "x"}]))
    assert [(r["id"], r["alias"]) for r in row] == [("gpu/meta/Llama-3", "llama"), ("gpu/x", "gpu/x")]
    for bad in ({"a/b": "m"}, {"a": ""}, ["nopair"], {"A": "m", "a": "n"}):
        with pytest.raises(InvalidRequest):
            parse_engine({"name": "gpu", "base_url": "http://x", "aliases": bad})
