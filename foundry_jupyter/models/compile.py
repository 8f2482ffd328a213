"""`model compile`: onnxruntime-genai's model builder over a local Hugging Face checkpoint.

This is the role Olive plays for Foundry Local. The builder needs torch and transformers (the optional
extra `compile`); it runs in a child process so torch never loads into the server or kernel, and
the result is installed into the cache under an alias like any downloaded model.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..config import defaults
from ..errors import FoundryError, InvalidRequest
from .cache import CachedModel
from .manager import ModelManager
from .registry import check_alias

PRECISIONS = ("int4", "fp16", "fp32")
EXECUTION_PROVIDERS = {"cpu": ("CPU", "CPUExecutionProvider"), "cuda": ("GPU", "CUDAExecutionProvider")}
PUBLISHER = "local"
INSTALL_HINT = "pip install 'foundry-jupyter[compile]'"


class CompileFailed(FoundryError):
    status = 500
    type = "server_error"
    code = "compile_failed"


def missing_requirements() -> list[str]:
    return [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]


def compile_model(
    folder: str | Path,
    *,
    alias: str | None = None,
    precision: str = "int4",
    ep: str = "cpu",
    manager: ModelManager | None = None,
    timeout_s: float | None = None,
) -> CachedModel:
    """Build `folder` (config.json, weights, tokenizer) into the cache; returns the CachedModel."""
    source = Path(folder).expanduser()
    if not (source / "config.json").is_file():
        raise InvalidRequest(f"{source} is not a Hugging Face checkpoint folder: it has no config.json")
    if precision not in PRECISIONS:
        raise InvalidRequest(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if ep not in EXECUTION_PROVIDERS:
        raise InvalidRequest(
            f"unknown execution provider {ep!r} (choose from {', '.join(EXECUTION_PROVIDERS)})"
        )
    if precision == "fp16" and ep == "cpu":
        raise InvalidRequest("fp16 needs --ep cuda; on CPU use int4 or fp32")
    missing = missing_requirements()
    if missing:
        raise FoundryError(
            f"model compile needs {' and '.join(missing)}, which are not installed: {INSTALL_HINT}",
            code="missing_dependency",
        )
    alias = alias or re.sub(r"[^a-z0-9._-]+", "-", source.resolve().name.lower()).strip("-.") or "compiled"
    check_alias(alias)
    if manager is None:
        manager = ModelManager(defaults())
    device, provider = EXECUTION_PROVIDERS[ep]
    model_id = f"{alias}-{precision}-{'generic-cpu' if ep == 'cpu' else 'cuda-gpu'}:1"
    staging = manager.cache.staging_dir(model_id, PUBLISHER)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tempfile.TemporaryDirectory(prefix="og-builder-") as scratch:
            command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source.resolve())]
            command += ["-o", str(staging), "-p", precision, "-e", ep, "-c", scratch]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
            except subprocess.TimeoutExpired:
                raise CompileFailed(f"the model builder took longer than {timeout_s} s") from None
        if done.returncode != 0 or not (staging / "genai_config.json").is_file():
            lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            reason = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
            raise CompileFailed(f"the model builder failed on {source}: {reason.strip()}")
        model = manager.cache.install(
            staging, model_id, PUBLISHER, alias=alias, device=device, execution_provider=provider
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manager.refresh()
    return model
