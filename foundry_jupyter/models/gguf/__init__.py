"""GGUF import without torch: llama-family GGUF files become ONNX Runtime GenAI model folders.

`import_gguf(path, dest_dir, precision=...)` reads tensors and metadata with the `gguf` package, keeps
4-bit blocks exactly where asked, writes the decoder with onnxruntime-genai's own operators, and rebuilds
the tokenizer with its chat template.
"""

from __future__ import annotations

from .graph import PRECISIONS
from .importer import DEFAULT_PRECISION, import_gguf
from .reader import GGUFError, GGUFModel

__all__ = ["DEFAULT_PRECISION", "PRECISIONS", "GGUFError", "GGUFModel", "import_gguf"]
