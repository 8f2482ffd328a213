"""`POST v1/embeddings` with the real `openai.AsyncOpenAI` client, against the built-in random
`random-embed` BERT served by its own runner process."""

from __future__ import annotations

import asyncio
import base64
import shutil
from pathlib import Path

import numpy as np
import openai
import pytest

from foundry_jupyter.models.catalog import TINY_EMBED_ID

from .conftest import TINY

TEXTS = ["hello world", "the cat and the dog went to the river", "Jupyter notebook!"]


@pytest.fixture(scope="module")
def embed_cache_dir(tiny_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from foundry_jupyter.config import defaults
    from foundry_jupyter.models.manager import ModelManager

    cache = tmp_path_factory.mktemp("embed-cache") / "models"
    shutil.copytree(tiny_cache_dir, cache)
    ModelManager(defaults({"FOUNDRY_JUPYTER_CACHE": str(cache)})).ensure("random-embed")
    return cache


@pytest.fixture
def foundry_cache(embed_cache_dir: Path, tmp_path: Path) -> Path:
    cache = tmp_path / "cache" / "models"
    shutil.copytree(embed_cache_dir, cache)
    return cache


@pytest.fixture(scope="module")
def reference(embed_cache_dir: Path):
    """The same model in this process: what the runner's vectors must equal."""
    from foundry_jupyter.engine.embeddings import EmbeddingModel
    from foundry_jupyter.models.cache import ModelCache

    model = EmbeddingModel.load(ModelCache(embed_cache_dir).find(TINY_EMBED_ID).path)
    yield model
    model.close()


async def test_openai_client_embeds_a_list_of_texts(client, reference) -> None:
    answer = await client.embeddings.create(model="random-embed", input=TEXTS)  # base64 on the wire
    assert answer.object == "list" and answer.model == TINY_EMBED_ID
    assert [d.index for d in answer.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in answer.data], dtype=np.float32)
    expected, tokens = reference.embed(TEXTS)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == tokens


async def test_float_and_base64_formats_carry_the_same_vector(http) -> None:
    body = {"model": "random-embed", "input": "hello world"}
    floats = (await http.post("v1/embeddings", json={**body, "encoding_format": "float"})).json()
    packed = (await http.post("v1/embeddings", json={**body, "encoding_format": "base64"})).json()
    as_floats = np.array(floats["data"][0]["embedding"], dtype=np.float32)
    unpacked = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(as_floats, unpacked)
    assert as_floats.shape == (32,)
    assert floats["data"][0]["object"] == "embedding"


async def test_token_arrays_and_dimensions(client, reference) -> None:
    ids = reference.tokenize(["hello world"])[0]
    one = await client.embeddings.create(model="random-embed", input=ids)
    many = await client.embeddings.create(model="random-embed", input=[ids, ids], dimensions=8)
    by_text, _ = reference.embed(["hello world"])
    np.testing.assert_allclose(one.data[0].embedding, by_text[0], atol=1e-6)
    assert [len(d.embedding) for d in many.data] == [8, 8]
    assert np.linalg.norm(many.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    assert many.usage.prompt_tokens == 2 * len(ids)


async def test_concurrent_requests_are_answered_each_with_its_own_vectors(client, reference) -> None:
    answers = await asyncio.gather(
        *(client.embeddings.create(model="random-embed", input=TEXTS[i % 3]) for i in range(12))
    )
    expected, _ = reference.embed(TEXTS)
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(answer.data[0].embedding, expected[i % 3], atol=1e-6)


async def test_mistakes_are_openai_shaped_4xx(client, http) -> None:
    cases = [
        ({"model": "random-embed", "input": ""}, "input"),
        ({"model": "random-embed", "input": []}, "input"),
        ({"model": "random-embed", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "random-embed", "input": "x", "dimensions": 33}, "dimensions"),
        ({"model": "random-embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "random-embed", "input": [[10**6]]}, "input"),
        ({"model": "random-embed", "input": [[5] * 129]}, "input"),
        ({"model": TINY, "input": "x"}, "model"),
    ]
    for body, param in cases:
        response = await http.post("v1/embeddings", json=body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["param"] == param and "Traceback" not in error["message"], (body, error)
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="random-embed", messages=[{"role": "user", "content": "x"}]
        )
    assert "embedding model" in info.value.body["message"]


async def test_the_kernel_service_backend_embeds_through_the_server(base_url, token, reference) -> None:
    from foundry_jupyter.kernel.backends import ServiceBackend

    backend = ServiceBackend(base_url, token)
    try:
        vectors = await asyncio.to_thread(backend.embed, "random-embed", TEXTS, 16)
    finally:
        backend.close()
    expected, _ = reference.embed(TEXTS, dimensions=16)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


async def test_models_carry_context_length_output_limit_and_capabilities(client, http) -> None:
    models = {m.id: m.model_dump() for m in (await client.models.list()).data}
    assert models[TINY_EMBED_ID]["capabilities"] == ["embeddings"]
    assert models[TINY_EMBED_ID]["context_length"] == 128
    assert models[TINY]["capabilities"] == ["chat", "completions", "tools", "fim"]
    assert models[TINY]["context_length"] == 1024
    catalog = {e["id"]: e for e in (await http.get("foundry/list")).json()}
    assert catalog[TINY_EMBED_ID]["capabilities"] == ["embeddings"]
    assert catalog[TINY_EMBED_ID]["task"] == "embeddings"
    assert catalog[TINY]["capabilities"] == ["chat", "completions", "tools", "fim"]
    assert catalog["all-MiniLM-L6-v2-generic-cpu:1"]["contextLength"] == 512
    smollm2 = catalog["SmolLM2-135M-Instruct-generic-cpu:1"]
    assert smollm2["contextLength"] == 8192 and smollm2["maxOutputTokens"] == 2048
