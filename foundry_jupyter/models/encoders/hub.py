"""Embedding models that Hugging Face repos publish as ONNX: which files to fetch, and the folder they make.

Sentence-transformers repos (`sentence-transformers/all-MiniLM-L6-v2`, `BAAI/bge-small-en-v1.5`, ...)
ship an exported encoder under `onnx/` (often beside optimized and quantized variants: only the one
file the catalog names is fetched) and, at the top, `tokenizer.json`, `config.json` and the
sentence-transformers configs that say how to pool (`modules.json`, `1_Pooling/config.json`,
`sentence_bert_config.json`). Transformers.js repos (`Xenova/...`) have no pooling config: their
catalog entry says how to pool. `finish_folder` turns the fetched files into the folder
`engine.embeddings.EmbeddingModel` loads: the graph as `model.onnx` and an `embedding_config.json`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from ...engine.embeddings import EMBEDDING_CONFIG, MODEL_FILE
from ...errors import DownloadFailed
from .bert import read_pooling

# Small files at the top of a repo that describe the model, its tokenizer and its pooling.
_DESCRIPTIONS = ("config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json")
_EXTERNAL_DATA = ("_data", ".data")  # suffixes of an ONNX graph's external weights file


def wanted(relative: str, onnx_file: str) -> bool:
    """Whether a repo file belongs to the embedding folder of the graph `onnx_file`."""
    path = PurePosixPath(relative)
    if relative in _DESCRIPTIONS:
        return True
    if path.name == "config.json" and len(path.parts) == 2 and path.parts[0].endswith("Pooling"):
        return True  # sentence-transformers' pooling module, `1_Pooling/config.json`
    return relative == onnx_file or relative in (onnx_file + s for s in _EXTERNAL_DATA)


def finish_folder(
    folder: Path, onnx_file: str, *, pooling: str | None = None, normalize: bool | None = None
) -> None:
    """Make the fetched repo files in `folder` a loadable embedding folder. `pooling` / `normalize`
    override what the repo's sentence-transformers configs say (needed where it has none)."""
    graph = folder / onnx_file
    for needed in (graph, folder / "tokenizer.json", folder / "config.json"):
        if not needed.is_file():
            raise DownloadFailed(
                f"The repository has no {needed.relative_to(folder)}: not an embedding model"
            )
    config: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    modules = (
        json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        if (folder / "modules.json").is_file()
        else []
    )
    if any(str(m.get("type", "")).endswith(".Dense") for m in modules):
        # The ONNX export holds the transformer only; a Dense layer after pooling would be missing.
        raise DownloadFailed("The repository's model ends in a Dense layer, which its ONNX export leaves out")
    repo_pooling, repo_normalize = read_pooling(folder)
    max_positions = int(config.get("max_position_embeddings") or config.get("n_positions") or 512)
    max_seq = max_positions
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        max_seq = min(
            max_seq, int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", max_seq))
        )
    # The graph and its external weights move to the top, keeping the names the graph refers to.
    for suffix in ("", *_EXTERNAL_DATA):
        part = folder / (onnx_file + suffix)
        if part.is_file():
            target = folder / (MODEL_FILE if not suffix else part.name)
            if part != target:
                shutil.move(part, target)
    embedding_config = {
        "model_type": config.get("model_type", ""),
        "pooling": pooling or repo_pooling,
        "normalize": repo_normalize if normalize is None else normalize,
        "dimensions": int(config.get("hidden_size") or config.get("n_embd")),
        "max_seq_length": max_seq,
        "context_length": max_positions,
        "vocab_size": int(config["vocab_size"]),
        "pad_token_id": int(config.get("pad_token_id") or 0),
        "source_file": onnx_file,
    }
    (folder / EMBEDDING_CONFIG).write_text(json.dumps(embedding_config, indent=2), encoding="utf-8")
