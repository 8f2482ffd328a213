"""`import_gguf` on bad input: one clear FoundryError, and no half-written folder left behind."""

from __future__ import annotations

import json

import pytest

from foundry_jupyter.errors import FoundryError, InvalidRequest
from foundry_jupyter.models.gguf import GGUFError, import_gguf


def test_writes_a_complete_folder(tiny_gguf, tmp_path):
    messages = []
    folder = import_gguf(tiny_gguf("Q4_0"), tmp_path / "out", precision="fp32", progress=messages.append)
    names = {p.name for p in folder.iterdir()}
    assert {
        "genai_config.json",
        "model.onnx",
        "model.onnx.data",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= names
    assert json.loads((folder / "genai_config.json").read_text())["model"]["context_length"] == 256
    assert messages[0].startswith("reading") and messages[-1] == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(GGUFError, match="not found"):
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(GGUFError, match="not a readable GGUF"):
        import_gguf(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_precision_and_occupied_destination(tiny_gguf, tmp_path):
    with pytest.raises(InvalidRequest, match="unknown precision"):
        import_gguf(tiny_gguf("Q4_1"), tmp_path / "out", precision="int3")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FoundryError, match="not an empty folder"):
        import_gguf(tiny_gguf("Q4_1"), tmp_path / "full")


def test_unsupported_architecture(tmp_path):
    import gguf

    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError, match="architecture 'gpt2' is not supported"):
        import_gguf(path, tmp_path / "out")
