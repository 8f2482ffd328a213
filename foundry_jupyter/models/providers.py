"""Execution-provider names as the catalog uses them, and which ones this machine can use.

Catalog entries carry ONNX Runtime's long names (`CUDAExecutionProvider`); people type short ones
(`cuda`). Both map onto one short, lower-case form for comparisons.
"""

from __future__ import annotations

# Short name -> ONNX Runtime's name, for the providers a catalog entry may name.
LONG_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "dml": "DmlExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "nvtensorrtrtx": "NvTensorRTRTXExecutionProvider",
    "vitisai": "VitisAIExecutionProvider",
}

DEVICE_RANK = {"NPU": 0, "GPU": 1, "CPU": 2}


def short_provider(name: str) -> str:
    """`CUDAExecutionProvider`, `CUDA` and `cuda` all give `cuda`."""
    short = name.strip().lower()
    if short.endswith("executionprovider"):
        short = short[: -len("executionprovider")]
    return short


def long_provider(name: str) -> str:
    short = short_provider(name)
    return LONG_NAMES.get(short, name)


def usable_providers() -> list[str]:
    """Short names of the providers this machine can really run, best first (always ends with cpu)."""
    try:
        from ..engine.hardware import usable_providers as engine_usable
    except ImportError:
        return ["cpu"]
    found = [short_provider(p) for p in engine_usable()]
    if "cpu" not in found:
        found.append("cpu")
    return found
