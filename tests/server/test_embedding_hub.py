"""A shipped Hugging Face ONNX embedding entry through the routes: downloaded from a stand-in repo of the
same name on the Hub imitation, then served by its runner to the real `openai` client."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from foundry_jupyter.models.encoders.tiny import build_tiny_embedding_model
from tests.models.test_embedding_download import TEXTS, reference_vectors, sentence_transformers_repo
from tests.support.hub import HubServer

BGE = "BAAI/bge-small-en-v1.5"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    return build_tiny_embedding_model(tmp_path_factory.mktemp("reference") / "random-embed")


@pytest.fixture
def hub(tmp_path, converted, monkeypatch):
    repo = sentence_transformers_repo(tmp_path / "bge", converted)
    (repo / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))  # as BGE
    with HubServer({BGE: repo}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


async def test_download_then_embed_with_the_repos_pooling(http, client, hub, converted, tmp_path):
    async with http.stream("POST", "openai/download", json={"model": "bge-small-en-v1.5"}) as response:
        lines = [line async for line in response.aiter_lines()]
    assert response.status_code == 200
    assert json.loads("".join(lines[lines.index("[DONE]") + 1 :]))["success"] is True
    models = {m.id: m for m in (await client.models.list()).data}
    assert models["bge-small-en-v1.5-generic-cpu:1"].model_dump()["capabilities"] == ["embeddings"]

    answer = await client.embeddings.create(model="bge-small-en-v1.5", input=TEXTS)
    vectors = np.array([d.embedding for d in answer.data], dtype=np.float32)
    expected = reference_vectors(converted, tmp_path, pooling="cls")
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert answer.usage.prompt_tokens > 0
