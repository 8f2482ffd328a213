"""`POST v1/completions` with `suffix` (fill in the middle), the `fim` capability, and what inline
completion in JupyterLab relies on: a client that leaves stops generation, and the next request,
which extends the prefix, does not read the unchanged prefix again."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from tests.engine.test_fim import strip_fim

from .conftest import LONG, TINY

NOFIM = "tiny-nofim-generic-cpu:1"
PREFIX = "def answer(question):\n    data = notebook cell python the" * 3
SUFFIX = "\n    return data\n"


@pytest.fixture
def foundry_cache(foundry_cache: Path) -> Path:
    """The test cache plus a copy of the tiny model whose tokenizer has no FIM tokens."""
    [tiny] = [p.parent for p in foundry_cache.rglob("genai_config.json") if "long" not in str(p)]
    folder = strip_fim(
        Path(shutil.copytree(tiny, foundry_cache / "foundry-jupyter" / "tiny-nofim-generic-cpu-1"))
    )
    (folder / "inference_model.json").write_text(json.dumps({"Name": NOFIM}))
    return foundry_cache


async def test_suffix_fills_the_middle_streamed_or_not(client) -> None:
    params = {"model": TINY, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 8, "temperature": 0}
    answer = await client.completions.create(**params)
    assert answer.object == "text_completion" and 0 < answer.usage.completion_tokens <= 8
    stream = await client.completions.create(**params, stream=True)
    assert "".join([c.choices[0].text async for c in stream if c.choices]) == answer.choices[0].text
    plain = await client.completions.create(**{**params, "suffix": None})
    assert answer.usage.prompt_tokens > plain.usage.prompt_tokens  # the suffix and three FIM tokens


async def test_capability_fim_follows_the_tokenizer(http) -> None:
    models = {m["id"]: m for m in (await http.get("v1/models")).json()["data"]}
    assert "fim" in models[TINY]["capabilities"] and "completions" in models[TINY]["capabilities"]
    assert "fim" not in models[NOFIM]["capabilities"]
    listed = {row["id"]: row for row in (await http.get("foundry/list")).json()}
    assert "fim" in listed[TINY]["capabilities"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_without_fim_tokens_answers_400(http, stream: bool) -> None:
    body = {"model": NOFIM, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 4, "stream": stream}
    response = await http.post("v1/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "fim_unsupported" and error["param"] == "suffix"
    assert error["type"] == "invalid_request_error" and "Traceback" not in error["message"]
    # An empty suffix is no suffix: the same model completes the prefix.
    response = await http.post("v1/completions", json={**body, "suffix": "", "stream": False})
    assert response.status_code == 200


@pytest.mark.long_model
async def test_a_client_that_leaves_stops_it_and_the_next_keystroke_reuses_the_prefix(http, service) -> None:
    body = {"model": LONG, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 3000, "temperature": 0}
    async with http.stream("POST", "v1/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break  # a keystroke: leave after the first event
    runner = service.supervisor.get(LONG)

    async def stopped() -> bool:
        info = await service.supervisor.call(runner, {"op": "info"})
        return info["cancelled"] == 1 and info["active"] == 0

    for _ in range(200):
        if await stopped():
            break
        await asyncio.sleep(0.1)
    assert await stopped(), "generation still running after its client left"
    longer = {**body, "prompt": PREFIX + " data", "max_tokens": 4}
    answer = (await http.post("v1/completions", json=longer)).json()
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] >= answer["usage"]["prompt_tokens"] // 2
