"""Embedding models from Hugging Face repos that publish ONNX, through the Hub imitation on 127.0.0.1.

The repos are made from the built-in random BERT laid out as the real ones are: sentence-transformers
repos (an `onnx/` folder of several exports beside the safetensors, pooling in `1_Pooling/`) and
Transformers.js repos (no pooling config: the catalog entry says how to pool).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from foundry_jupyter.engine.embeddings import EMBEDDING_CONFIG, EmbeddingModel
from foundry_jupyter.errors import DownloadFailed
from foundry_jupyter.models import download as dl
from foundry_jupyter.models.cache import ModelCache
from foundry_jupyter.models.catalog import Catalog, CatalogEntry, HuggingFaceSource
from foundry_jupyter.models.encoders.tiny import build_tiny_embedding_model, write_tiny_sentence_transformer
from tests.support.hub import HubServer

from .helpers import entry as make_entry

TEXTS = ["hello world", "the cat and the dog went to the river", "jupyter notebook"]
SHIPPED = ("bge-small-en-v1.5", "bge-base-en-v1.5", "all-minilm-l6-v2-int8", "multi-qa-minilm-l6-cos-v1")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The random BERT as this package's own converter writes it: the reference vectors."""
    return build_tiny_embedding_model(tmp_path_factory.mktemp("reference") / "random-embed")


def sentence_transformers_repo(root: Path, converted: Path, onnx_file: str = "onnx/model.onnx") -> Path:
    write_tiny_sentence_transformer(root)
    (root / onnx_file).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(converted / "model.onnx", root / onnx_file)
    (root / "onnx" / "model_O4.onnx").write_bytes(b"o" * 40_000)  # other exports: never fetched
    (root / "README.md").write_text("# an embedding model\n")
    return root


def transformers_js_repo(root: Path, converted: Path) -> Path:
    sentence_transformers_repo(root, converted)
    for name in ("modules.json", "sentence_bert_config.json", "model.safetensors"):
        (root / name).unlink()
    shutil.rmtree(root / "1_Pooling")
    return root


def hub_entry(repo: str, onnx_file: str = "onnx/model.onnx", **source) -> CatalogEntry:
    data = make_entry(f"{repo.split('/')[1]}-generic-cpu", repo.split("/")[1].lower(), task="embeddings")
    data["source"] = {"kind": "huggingface", "repo": repo, "onnxFile": onnx_file, **source}
    return CatalogEntry.model_validate(data)


def reference_vectors(converted: Path, tmp_path: Path, **config) -> np.ndarray:
    folder = tmp_path / "reference-variant"
    shutil.copytree(converted, folder)
    data = json.loads((folder / EMBEDDING_CONFIG).read_text()) | config
    (folder / EMBEDDING_CONFIG).write_text(json.dumps(data))
    model = EmbeddingModel.load(folder)
    try:
        return model.embed(TEXTS)[0]
    finally:
        model.close()


def embed(path: Path) -> tuple[np.ndarray, dict]:
    model = EmbeddingModel.load(path)
    try:
        return model.embed(TEXTS)[0], json.loads((path / EMBEDDING_CONFIG).read_text())
    finally:
        model.close()


def test_a_sentence_transformers_repo_gives_its_onnx_export_only(tmp_path, converted):
    repo = sentence_transformers_repo(tmp_path / "repo", converted)
    cache = ModelCache(tmp_path / "models")
    with HubServer({"org/minilm": repo}) as hub:
        model = dl.download(hub_entry("org/minilm"), cache, endpoint=hub.url)
        fetched = {
            p.split("/resolve/", 1)[1].split("/", 1)[1] for _, p, _ in hub.requests if "/resolve/" in p
        }
    assert fetched == {
        "onnx/model.onnx",
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    }
    assert (model.path / "model.onnx").read_bytes() == (converted / "model.onnx").read_bytes()
    assert not (model.path / "onnx" / "model.onnx").exists()
    vectors, config = embed(model.path)
    assert (config["pooling"], config["normalize"], config["max_seq_length"]) == ("mean", True, 64)
    np.testing.assert_allclose(vectors, reference_vectors(converted, tmp_path), atol=1e-6)
    assert cache.find(model.id) is not None


def test_pooling_comes_from_the_repos_own_config(tmp_path, converted):
    repo = sentence_transformers_repo(tmp_path / "repo", converted, "onnx/model_qint8.onnx")
    (repo / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    modules = json.loads((repo / "modules.json").read_text())
    (repo / "modules.json").write_text(json.dumps([m for m in modules if "Normalize" not in m["type"]]))
    with HubServer({"BAAI/bge-like": repo}) as hub:
        model = dl.download(
            hub_entry("BAAI/bge-like", "onnx/model_qint8.onnx"), ModelCache(tmp_path / "m"), endpoint=hub.url
        )
    vectors, config = embed(model.path)
    assert (config["pooling"], config["normalize"]) == ("cls", False)
    np.testing.assert_allclose(
        vectors, reference_vectors(converted, tmp_path, pooling="cls", normalize=False), atol=1e-6
    )


def test_a_repo_without_pooling_config_pools_as_its_entry_says(tmp_path, converted):
    repo = transformers_js_repo(tmp_path / "repo", converted)
    entry = hub_entry("Xenova/minilm", pooling="max", normalize=True)
    with HubServer({"Xenova/minilm": repo}) as hub:
        model = dl.download(entry, ModelCache(tmp_path / "m"), endpoint=hub.url)
    vectors, config = embed(model.path)
    assert (config["pooling"], config["normalize"]) == ("max", True)
    np.testing.assert_allclose(vectors, reference_vectors(converted, tmp_path, pooling="max"), atol=1e-6)


def test_a_missing_onnx_file_is_one_line(tmp_path, converted):
    repo = sentence_transformers_repo(tmp_path / "repo", converted)
    with (
        HubServer({"org/minilm": repo}) as hub,
        pytest.raises(DownloadFailed, match=r"onnx/model_fp16\.onnx"),
    ):
        dl.download(
            hub_entry("org/minilm", "onnx/model_fp16.onnx"), ModelCache(tmp_path / "m"), endpoint=hub.url
        )


@pytest.mark.parametrize("alias", SHIPPED)
def test_shipped_entries_download_and_embed_from_their_repos_layout(alias, tmp_path, converted):
    """Each shipped entry, fetched from a stand-in repo of the same name and layout."""
    (entry,) = Catalog.load().variants(alias)
    source = entry.source
    assert isinstance(source, HuggingFaceSource) and entry.task == "embeddings"
    assert entry.capabilities == ["embeddings"] and source.onnx_file
    builder = transformers_js_repo if source.pooling else sentence_transformers_repo
    repo = builder(tmp_path / "repo", converted)
    if source.onnx_file != "onnx/model.onnx":
        shutil.move(repo / "onnx" / "model.onnx", repo / source.onnx_file)
    with HubServer({source.repo: repo}) as hub:
        model = dl.download(entry, ModelCache(tmp_path / "m"), endpoint=hub.url)
    vectors, _ = embed(model.path)
    assert vectors.shape == (len(TEXTS), 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_a_model_with_a_dense_layer_after_pooling_is_refused(tmp_path, converted):
    repo = sentence_transformers_repo(tmp_path / "repo", converted)
    modules = json.loads((repo / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (repo / "modules.json").write_text(json.dumps(modules))
    cache = ModelCache(tmp_path / "m")
    with HubServer({"org/dense": repo}) as hub, pytest.raises(DownloadFailed, match="Dense layer"):
        dl.download(hub_entry("org/dense"), cache, endpoint=hub.url)
    assert cache.scan() == []
