"""The benchmark's quick mode runs end to end and every system answers. No speed is asserted here."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import peer
from benchmarks.llamacpp import llamacpp_available
from benchmarks.run import main
from tests.gguf.tinygguf import write_tiny_gguf

PEER_MISSING = peer.peer_available()
LLAMACPP_MISSING = llamacpp_available()


@pytest.fixture(scope="module")
def quick_results(tiny_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("bench")
    cache = work / "cache"
    shutil.copytree(tiny_cache_dir, cache)
    systems = "ours,raw" + ("" if PEER_MISSING else ",peer") + ("" if LLAMACPP_MISSING else ",llamacpp")
    # A small random GGUF, imported at the default precision: what llama.cpp and ours both load.
    gguf = write_tiny_gguf(work / "tinygguf.gguf", "Q4_1")
    args = ["--quick", "--systems", systems, "--models", "tiny,tinygguf-int4", "--gguf", f"tinygguf={gguf}"]
    code = main([*args, "--cache", str(cache), "--out", str(work / "out")])
    results = json.loads((work / "out" / "results.json").read_text())
    results["exit_code"] = code
    results["out"] = work / "out"
    return results


def _systems(rows: list[dict[str, Any]]) -> set[str]:
    return {row["system"] for row in rows}


def test_ours_and_raw_answer_every_load(quick_results: dict[str, Any]) -> None:
    assert quick_results["exit_code"] == 0
    assert {"ours", "raw og"} <= _systems(quick_results["loads"])
    for row in quick_results["loads"]:
        assert row["errors"] == 0, row["error_samples"]
        assert row["requests"] >= 2
    for row in quick_results["turns"]:
        assert row["prompt_tokens"] > 0 and row["second_turn_ttft_p50_ms"] > 0
    assert {"ours", "raw og"} <= _systems(quick_results["turns"])


def test_staggered_arrivals_and_long_prompts_are_answered(quick_results: dict[str, Any]) -> None:
    staggered = [row for row in quick_results["staggered"] if row["system"] == "ours"]
    assert {row["model"] for row in staggered} == {"tiny", "tinygguf-int4"}
    prompts = [row for row in quick_results["prompts"] if row["system"] in ("ours", "raw og")]
    assert [(row["system"], row["model"]) for row in prompts] == [
        ("ours", "tinygguf-int4"),  # only a GGUF-backed model
        ("raw og", "tinygguf-int4"),
    ]
    for row in staggered + prompts:
        assert row["errors"] == 0 and row["requests"] >= 1, row["error_samples"]
    for row in prompts:
        assert row["prompt_tokens"] > 20 and row["prompt_tps"] > 0


def test_status_was_polled_during_streams(quick_results: dict[str, Any]) -> None:
    status = quick_results["status"]["tiny"]
    assert status["samples"] >= 1 and status["stream_errors"] == 0


def test_report_files_are_written(quick_results: dict[str, Any]) -> None:
    out: Path = quick_results["out"]
    table = (out / "results.md").read_text()
    assert "| tiny | 1 | foundry-jupyter REST |" in table
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "results.png").read_bytes().startswith(b"\x89PNG")
    assert any(label.startswith("ours server") for label in quick_results["memory_mb"])


@pytest.mark.skipif(bool(PEER_MISSING), reason=f"Foundry Local peer unavailable: {PEER_MISSING}")
def test_peer_answers(quick_results: dict[str, Any]) -> None:
    rows = [row for row in quick_results["loads"] if row["system"] == "peer"]
    assert rows and all(row["errors"] == 0 and row["requests"] >= 2 for row in rows)
    assert quick_results["notes"]["peer_version"]


@pytest.mark.skipif(bool(LLAMACPP_MISSING), reason=f"llama.cpp peer unavailable: {LLAMACPP_MISSING}")
def test_llamacpp_answers_on_the_same_gguf(quick_results: dict[str, Any]) -> None:
    for key in ("loads", "staggered", "prompts"):
        rows = [row for row in quick_results[key] if row["system"] == "llama.cpp"]
        assert [row["model"] for row in rows if row["model"] == "tiny"] == []  # no GGUF, no llama.cpp
        assert rows and all(row["errors"] == 0 and row["requests"] >= 1 for row in rows)
    ours, theirs = (
        next(r for r in quick_results["prompts"] if r["system"] == s) for s in ("ours", "llama.cpp")
    )
    assert ours["prompt_tokens"] == theirs["prompt_tokens"]  # the same prompt, token for token
    table = (quick_results["out"] / "results.md").read_text()
    assert "| tinygguf-int4 | decode tok/s, 1 stream |" in table
    assert "Skipped llamacpp: tiny: tiny has no GGUF file." in table
