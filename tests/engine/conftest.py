"""Fixtures for the engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from foundry_jupyter.engine.model import ChatModel


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Iterator[ChatModel]:
    """The tiny model with its og.Engine, one per test module so no module sees another's held state."""
    with ChatModel.load(tiny_model_dir, model_id="tiny") as m:
        assert m.uses_engine, m.engine_error
        yield m
