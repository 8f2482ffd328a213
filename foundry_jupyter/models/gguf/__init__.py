"""GGUF import without torch: llama-family GGUF files become ONNX Runtime GenAI model folders.

`import_gguf(path, dest_dir, precision=...)` reads tensors and metadata with the `gguf` package, keeps
4-bit blocks exactly where asked, writes the decoder with onnxruntime-genai's own operators, and rebuilds
the tokenizer with its chat template. `import_model(path, alias=...)` does the same straight into the
model cache, where the model then answers to its alias.
"""

from __future__ import annotations

from .cache import default_alias, import_model
from .graph import PRECISIONS
from .importer import DEFAULT_PRECISION, import_gguf
from .reader import GGUFError, GGUFModel

__all__ = [
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "GGUFError",
    "GGUFModel",
    "default_alias",
    "import_gguf",
    "import_model",
]
