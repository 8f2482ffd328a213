"""The inline-completion benchmark runs end to end on the tiny model, with FIM. No speed is asserted:
only that every keystroke got ghost text and that the last request reused the prefix it shares."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.inline import main


def test_inline_benchmark_runs_and_reuses_the_prefix(tiny_cache_dir: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(tiny_cache_dir, tmp_path / "cache")
    argv = ["--model", "tiny", "--cells", "1", "--keystrokes", "4", "--fim", "--out", str(tmp_path)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[0])
    assert result["fim"] and result["keystrokes"] == 4 and result["p50_ms"] > 0
    assert result["context_tokens"] > 100
    assert result["last_cached_tokens"] >= result["context_tokens"] // 2
