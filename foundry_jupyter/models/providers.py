"""Execution-provider names as the catalog uses them, and which ones this machine can use.

Catalog entries carry ONNX Runtime's long names (`CUDAExecutionProvider`); people type short ones
(`cuda`). `engine.hardware.normalize_provider` maps both onto one short, lower-case form.
"""

from __future__ import annotations

from ..engine.hardware import normalize_provider, provider_info
from ..engine.hardware import usable_providers as engine_usable_providers
from ..errors import InvalidRequest

DEVICE_RANK = {"NPU": 0, "GPU": 1, "CPU": 2}


def short_provider(name: str) -> str:
    """`CUDAExecutionProvider`, `CUDA` and `cuda` all give `cuda`; an unknown name is kept, lower case."""
    return normalize_provider(name, strict=False)


def long_provider(name: str) -> str:
    """ONNX Runtime's name for a provider (`cuda` -> `CUDAExecutionProvider`); an unknown name as given."""
    try:
        return provider_info(name).ort_name
    except InvalidRequest:
        return name


def usable_providers() -> list[str]:
    """Short names of the providers this machine can really run, best first (always ends with cpu)."""
    found = engine_usable_providers()
    return found if "cpu" in found else [*found, "cpu"]
