"""Downloads through the routes, from a Hugging Face imitation on 127.0.0.1 (tests/support/hub.py)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil

import pytest

from tests.models.helpers import entry as make_entry
from tests.support.hub import HubServer

REPO = "org/tiny-onnx"
SUB = "cpu/tiny"
MODEL_FILE = f"{SUB}/model.onnx"
HUB_ID = "tinyhub-generic-cpu:1"


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("hub-repo")
    shutil.copytree(tiny_model_dir, root / SUB)
    return root


@pytest.fixture
def hub(repo_dir, monkeypatch):
    with HubServer({REPO: repo_dir}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


@pytest.fixture
def foundry_config(tmp_path, hub):
    data = make_entry("tinyhub-generic-cpu", "tinyhub")
    data["source"] = {"kind": "huggingface", "repo": REPO, "subfolder": SUB}
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"models": [data]}))
    return {"catalog_files": [str(catalog)]}


async def read_lines(http, body) -> tuple[int, list[str]]:
    async with http.stream("POST", "openai/download", json=body) as response:
        lines = [line async for line in response.aiter_lines()]
        return response.status_code, lines


async def test_download_streams_progress_then_loads_on_request(http, client, hub):
    hub.slow(MODEL_FILE, 0.002)
    status, lines = await read_lines(http, {"model": "tinyhub"})
    assert status == 200
    done = lines.index("[DONE]")
    progress = [line for line in lines[:done] if line]
    assert len(progress) >= 2
    percents = []
    for line in progress:
        match = re.fullmatch(r"Total (\d+\.\d\d)% Downloading (.+)", line)
        assert match, line
        percents.append(float(match.group(1)))
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert any("model.onnx" in line for line in progress)
    result = json.loads("".join(lines[done + 1 :]))
    assert result == {"success": True, "errorMessage": None}
    assert HUB_ID in (await http.get("openai/models")).json()
    answer = await client.chat.completions.create(
        model="tinyhub", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert answer.model == HUB_ID


async def test_download_in_foundry_body_shape_and_cache_hit(http, hub):
    body = {"model": {"Name": HUB_ID, "Uri": f"https://huggingface.co/{REPO}", "ProviderType": "HuggingFace"}}
    status, lines = await read_lines(http, body)
    assert status == 200 and json.loads(lines[-1] or lines[-2])["success"] is True
    fetched = len(hub.ranges("model.onnx"))
    status, lines = await read_lines(http, {"model": HUB_ID})
    assert json.loads([line for line in lines if line][-1])["success"] is True
    assert len(hub.ranges("model.onnx")) == fetched  # already cached: nothing fetched again


async def test_download_failure_is_reported_in_the_result(http, hub):
    hub.hide(MODEL_FILE)
    status, lines = await read_lines(http, {"model": "tinyhub"})
    assert status == 200
    result = json.loads([line for line in lines if line][-1])
    assert result["success"] is False and result["errorMessage"]
    assert "Traceback" not in result["errorMessage"]
    jobs = (await http.get("downloads")).json()["downloads"]
    assert jobs[-1]["state"] == "failed" and jobs[-1]["error"]


async def test_background_download_progress_and_cancel(http, hub):
    hub.slow(MODEL_FILE, 0.05)
    started = await http.post("downloads", json={"model": "tinyhub"})
    assert started.status_code == 202
    job = started.json()
    assert job["model"] == HUB_ID and job["state"] == "running"
    for key in ("id", "percent", "bytesDone", "bytesTotal", "speedBps", "file", "error"):
        assert key in job

    async def progressed() -> dict:
        for _ in range(200):
            [record] = (await http.get("downloads")).json()["downloads"]
            if record["bytesDone"] > 0:
                return record
            await asyncio.sleep(0.05)
        raise AssertionError("no progress reported")

    record = await progressed()
    assert record["bytesTotal"] > record["bytesDone"] and 0 < record["percent"] < 100
    # a second request for the same model joins the running job
    again = await http.post("downloads", json={"model": HUB_ID})
    assert again.json()["id"] == job["id"]
    cancelled = await http.delete(f"downloads/{job['id']}")
    assert cancelled.status_code == 200
    for _ in range(200):
        state = (await http.get(f"downloads/{job['id']}")).json()["state"]
        if state != "running":
            break
        await asyncio.sleep(0.05)
    assert state == "cancelled"
    assert HUB_ID not in (await http.get("openai/models")).json()
