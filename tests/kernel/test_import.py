"""`%foundry import`: a GGUF file becomes a cached model the notebook can chat with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from foundry_jupyter.kernel.magics import FoundryCellError
from foundry_jupyter.kernel.results import METADATA_KEY
from tests.gguf.tinygguf import write_tiny_gguf
from tests.kernel.test_magics import _chat_displays


def test_import_then_chat(shell: Any, tmp_path: Path, cache_copy: Path) -> None:
    gguf_file = write_tiny_gguf(tmp_path / "little-llama.gguf", "Q4_1")
    notice = shell.run_line_magic("foundry", f"import {gguf_file} --alias little --precision fp32")
    assert "little" in str(notice)

    cached = shell.run_line_magic("foundry", "cache")
    imported = cached[cached["alias"] == "little"]
    assert len(imported) == 1
    assert Path(imported.iloc[0]["path"]).is_relative_to(cache_copy)

    shell.run_line_magic("foundry", "use little")
    shell.run_cell_magic("foundry", "-n 4 --temperature 0", "hello")
    answers = [c for c in _chat_displays(shell) if c["metadata"]]
    assert answers[-1]["metadata"][METADATA_KEY]["model"] == imported.iloc[0]["id"]
    assert answers[-1]["metadata"][METADATA_KEY]["usage"]["completion_tokens"] > 0


def test_import_of_a_missing_file_is_one_line(shell: Any, tmp_path: Path) -> None:
    with pytest.raises(FoundryCellError) as info:
        shell.run_line_magic("foundry", f"import {tmp_path / 'nope.gguf'}")
    assert "nope.gguf" in str(info.value)
    assert "Traceback" not in str(info.value)
