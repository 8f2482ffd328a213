"""GGUF to ONNX without torch: a llama-family GGUF file in, an ONNX Runtime GenAI model folder out.

`import_gguf(path, dest_dir, precision=...)` reads tensors and metadata with the `gguf` package, keeps
4-bit blocks exactly where asked, writes the decoder with onnxruntime-genai's own operators, and rebuilds
the tokenizer with its chat template. The decoder takes an optional `logits_from` input (LOGITS_FROM:
the LM head only on positions from there; og never feeds it) and int4 folders also carry
`model.prompt.onnx` (PROMPT_FILE: the same decoder on integer GEMMs, several times faster for
prompts), both for a loop driving onnxruntime itself. A pure converter: it knows nothing of the cache
or the catalog (`ModelManager.import_gguf` puts a converted model into the cache under an alias).
"""

from __future__ import annotations

from .graph import LOGITS_FROM, PRECISIONS
from .importer import DEFAULT_PRECISION, import_gguf
from .prompt_graph import PROMPT_FILE
from .reader import GGUFError, GGUFModel

__all__ = [
    "DEFAULT_PRECISION",
    "LOGITS_FROM",
    "PRECISIONS",
    "PROMPT_FILE",
    "GGUFError",
    "GGUFModel",
    "import_gguf",
]
