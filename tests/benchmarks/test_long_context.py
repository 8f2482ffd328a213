"""benchmarks.long_context on a small imported GGUF: every variant reads the prompt to the same next
token's logits, and og's decode steps are profiled apart from the prompt. No speed is asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.long_context import main
from tests.gguf.tinygguf import write_tiny_gguf


@pytest.fixture(scope="module")
def int4_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from foundry_jupyter.models.gguf import import_gguf

    work = tmp_path_factory.mktemp("long")
    return import_gguf(write_tiny_gguf(work / "tiny.gguf", "mixed"), work / "int4", precision="int4")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, dict[str, Any]]:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    start = out.index("{\n")
    return out[:start], json.loads(out[start:])


@pytest.mark.parametrize("graph", ["model.onnx", "model.prompt.onnx"])
def test_prefill_variants_give_the_same_next_token_logits(int4_folder, capsys, graph):
    args = ["prefill", "--model-dir", str(int4_folder), "--words", "20", "--rounds", "1", "--threads", "1"]
    printed, out = _run(capsys, *args, "--chunk", "16", "--graph", graph, "--profile")
    assert out["prompt_tokens"] > 32
    for name in ("all_rows", "last_row", "last_row_chunks_of_16"):
        assert out[name]["last_row_max_abs_diff"] < 1e-4, name
    assert "MatMulNBits" in printed and "GroupQueryAttention" in printed


def test_decode_profiles_og_steps_apart_from_the_prompt(int4_folder, capsys):
    args = ["decode", "--model-dir", str(int4_folder), "--words", "20", "--tokens", "5", "--rounds", "1"]
    printed, out = _run(capsys, *args, "--threads", "1", "--profile")
    assert "the last prompt's 4 decode steps" in printed and "GroupQueryAttention" in printed
    row = out["og 20 words"]
    assert row["prompt_tokens"] > 32 and row["decode_tps"] > 0
