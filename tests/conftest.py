"""Fixtures shared by every test: an isolated home and cache, and the built-in tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ("pytest_jupyter.jupyter_server",)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory):
    """No test reads or writes the real ~/.foundry-jupyter, and nothing reaches a model hub."""
    home = tmp_path_factory.mktemp("foundry-home")
    saved = {k: os.environ.get(k) for k in ("FOUNDRY_JUPYTER_CACHE", "HF_HUB_DISABLE_TELEMETRY")}
    os.environ["FOUNDRY_JUPYTER_CACHE"] = str(home / "cache" / "models")
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the built-in tiny ONNX model, built once per test session."""
    from foundry_jupyter.engine.testmodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny")


@pytest.fixture(scope="session")
def tiny_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache (Foundry Local layout) holding the tiny model, built once per test session.

    Tests that change the cache must copy it first (`shutil.copytree`) rather than modify it.
    """
    from foundry_jupyter.config import defaults
    from foundry_jupyter.models.manager import ModelManager

    cache = tmp_path_factory.mktemp("tiny-cache") / "models"
    settings = defaults({"FOUNDRY_JUPYTER_CACHE": str(cache)})
    ModelManager(settings).ensure("tiny")
    return cache
