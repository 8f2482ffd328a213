"""The benchmark's quick mode runs end to end and every system answers. No speed is asserted here."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import peer
from benchmarks.run import main

PEER_MISSING = peer.peer_available()


@pytest.fixture(scope="module")
def quick_results(tiny_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("bench")
    cache = work / "cache"
    shutil.copytree(tiny_cache_dir, cache)
    systems = "ours,raw" if PEER_MISSING else "ours,peer,raw"
    code = main(["--quick", "--systems", systems, "--cache", str(cache), "--out", str(work / "out")])
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
