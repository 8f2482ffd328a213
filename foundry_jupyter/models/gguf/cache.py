"""Import a GGUF file straight into the model cache under an alias (CLI, Python and magics share it)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import InvalidRequest
from .importer import DEFAULT_PRECISION, import_gguf

PUBLISHER = "local"
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_alias(gguf_path: str | Path) -> str:
    """`SmolLM2-135M-Instruct.Q4_1.gguf` -> `smollm2-135m-instruct-q4_1`."""
    stem = Path(gguf_path).name.removesuffix(".gguf")
    slug = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")
    return slug or "imported-model"


def import_model(
    gguf_path: str | Path,
    *,
    alias: str | None = None,
    precision: str = DEFAULT_PRECISION,
    manager: Any = None,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Convert `gguf_path` into the cache as `<alias>-<precision>-generic-cpu:1`; returns the CachedModel.

    The model then answers to `alias` like any cached model. An earlier import under the same alias
    and precision is replaced once the new one is whole.
    """
    if manager is None:
        from ...config import defaults
        from ..manager import ModelManager

        manager = ModelManager(defaults())
    alias = alias or default_alias(gguf_path)
    if not _ALIAS.match(alias):
        raise InvalidRequest(f"Bad alias {alias!r}: use letters, digits, '.', '_' and '-'", param="alias")
    from ..catalog import LocalSource

    clash = [
        e
        for e in manager.catalog
        if not isinstance(e.source, LocalSource) and e.alias.lower() == alias.lower()
    ]
    if clash:
        raise InvalidRequest(f"The alias {alias!r} belongs to the catalog model {clash[0].id}", param="alias")
    model_id = f"{alias}-{precision}-generic-cpu:1"
    staging = manager.cache.staging_dir(model_id, PUBLISHER)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        import_gguf(gguf_path, staging, precision=precision, progress=progress)
        model = manager.cache.install(
            staging,
            model_id,
            PUBLISHER,
            alias=alias,
            device="CPU",
            execution_provider="CPUExecutionProvider",
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manager.refresh()
    return model
