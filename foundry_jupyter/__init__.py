"""foundry-jupyter: local LLM inference for Jupyter on ONNX Runtime GenAI.

Importing this package stays nearly free: onnxruntime-genai, pandas, ipywidgets and jupyter_server
load only when a feature that needs them is used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Notebook helpers, resolved lazily from the kernel layer (see __getattr__).
_KERNEL_API = (
    "cache_table",
    "catalog_table",
    "loaded_table",
    "openai_client",
    "chat",
    "embed",
    "embed_table",
)

__all__ = ["__version__", "load_ipython_extension", *_KERNEL_API]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import FoundryApp

    return [{"module": "foundry_jupyter.server.app", "app": FoundryApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "foundry-jupyter"}]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext foundry_jupyter`: registers the %foundry magics, nothing else."""
    from .kernel.magics import load_ipython_extension as load

    load(ipython)


def __getattr__(name: str) -> Any:
    if name in _KERNEL_API:
        from .kernel import api

        return getattr(api, name)
    raise AttributeError(f"module 'foundry_jupyter' has no attribute {name!r}")
