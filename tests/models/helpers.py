"""Small builders for catalog files and model folders used by the model-layer tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from foundry_jupyter.config import Settings, defaults


def genai_config(provider: str | None = None) -> dict[str, Any]:
    options = [{provider: {}}] if provider else []
    return {
        "model": {
            "type": "llama",
            "context_length": 256,
            "decoder": {"filename": "model.onnx", "session_options": {"provider_options": options}},
        },
        "search": {"max_length": 256},
    }


def make_model_folder(
    path: Path, *, name: str | None = None, provider: str | None = None, marker: bool = True
) -> Path:
    """A folder that looks like an ONNX GenAI model (not loadable: for cache and catalog tests)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "genai_config.json").write_text(json.dumps(genai_config(provider)))
    (path / "model.onnx").write_bytes(b"\0" * 1000)
    if marker and name:
        (path / "inference_model.json").write_text(json.dumps({"Name": name, "PromptTemplate": None}))
    return path


def entry(
    name: str,
    alias: str,
    *,
    version: int = 1,
    device: str = "CPU",
    ep: str = "CPUExecutionProvider",
    **extra: Any,
) -> dict[str, Any]:
    data = {
        "name": name,
        "version": version,
        "alias": alias,
        "publisher": "Test",
        "runtime": {"deviceType": device, "executionProvider": ep},
        "fileSizeMb": 1,
        "task": "chat-completion",
        "license": "MIT",
        "source": {"kind": "huggingface", "repo": f"test/{alias}", "subfolder": name},
    }
    data.update(extra)
    return data


DEMO = [
    entry("demo-generic-cpu", "demo", version=1),
    entry("demo-generic-cpu", "demo", version=2),
    entry("demo-cuda-gpu", "demo", device="GPU", ep="CUDAExecutionProvider"),
    entry("demo-dml-gpu", "demo", device="GPU", ep="DmlExecutionProvider"),
    entry("demo-qnn-npu", "demo", device="NPU", ep="QNNExecutionProvider"),
    entry("gpuonly-cuda-gpu", "gpuonly", device="GPU", ep="CUDAExecutionProvider"),
]


def settings_with(tmp_path: Path, entries: list[dict[str, Any]] | None = None) -> Settings:
    files = []
    if entries is not None:
        catalog = tmp_path / "user-catalog.json"
        catalog.write_text(json.dumps({"models": entries}))
        files.append(str(catalog))
    env = {"FOUNDRY_JUPYTER_CACHE": str(tmp_path / "cache" / "models")}
    if files:
        env["FOUNDRY_JUPYTER_CATALOGS"] = ":".join(files)
    return defaults(env)
