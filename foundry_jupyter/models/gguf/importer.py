"""`import_gguf`: a llama-family GGUF file in, a complete ONNX Runtime GenAI model folder out."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ...errors import InvalidRequest
from ..progress import StageCallback
from .genai_config import write_genai_config
from .graph import PRECISIONS, build_model
from .kv_cache import quantize_kv_cache
from .reader import GGUFModel
from .tokenizer import write_tokenizer

DEFAULT_PRECISION = "int4"


def import_gguf(
    gguf_path: str | Path,
    dest_dir: str | Path,
    *,
    precision: str = DEFAULT_PRECISION,
    progress: StageCallback | None = None,
) -> Path:
    """Convert `gguf_path` into an ONNX GenAI folder at `dest_dir` and return that folder.

    `precision`: "fp32" (every weight dequantized), "int4" (Q4_0/Q4_1 blocks and the tied head's 8-bit
    blocks kept, computed on activations rounded to int8 as llama.cpp computes them: the fastest, with
    llama.cpp's agreement with fp32), "int4-exact" (the same blocks on float32 activations: the same
    answers as fp32), "int4-kv8" (int4 with an 8-bit KV cache: decodes about twice as fast at long
    context, a point or two less agreement) or "int4-fast" (int8 kernels in two passes, the
    activations' int8 part and then the rest: about 99 % top-1 agreement with fp32; prompts are read
    more slowly). `progress` receives one short line per stage. The folder
    appears whole or not at all: it is written beside `dest_dir` and renamed into place; `dest_dir`
    must not exist or be empty.
    """
    if precision not in PRECISIONS:
        raise InvalidRequest(
            f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})", param="precision"
        )
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidRequest(f"destination {dest} already exists and is not an empty folder")

    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    say(f"reading {Path(gguf_path).name}")
    model = GGUFModel(gguf_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        say("writing tokenizer")
        write_tokenizer(model, work)
        write_genai_config(model, work)
        say(f"writing {precision} decoder")
        build_model(model, work, PRECISIONS[precision], progress)
        if PRECISIONS[precision].kv_bits == 8:
            say("calibrating the 8-bit KV cache")
            quantize_kv_cache(work)
        if dest.exists():
            dest.rmdir()
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    say("done")
    return dest
