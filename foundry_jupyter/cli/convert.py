"""`jupyter foundry model import <file.gguf>` and `jupyter foundry model compile <hf-folder>`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import add_output_option
from .output import print_json, wants_json
from .progress import Bars, activity, bars_wanted

if TYPE_CHECKING:
    from ..models.cache import CachedModel

IMPORT_PRECISIONS = (
    "int4",
    "int4-exact",
    "int4-kv8",
    "fp32",
    "int4-fast",
)  # kept in step with models.gguf.PRECISIONS
COMPILE_PRECISIONS = ("int4", "fp16", "fp32")


def register(groups: dict[str, Any]) -> None:
    model = groups["model"]

    p = model.add_parser(
        "import",
        help="convert a GGUF file (llama, mistral, qwen2) into the cache, without torch",
        description="Convert a llama-family GGUF file into an ONNX Runtime GenAI model in the cache.",
    )
    p.add_argument("file", help="the .gguf file")
    p.add_argument("--alias", default=None, help="the name to use for it (default: from the file name)")
    p.add_argument(
        "--precision",
        choices=IMPORT_PRECISIONS,
        default="int4",
        help="int4: the file's 4-bit blocks on 8-bit activations, as llama.cpp computes them (fastest, "
        "llama.cpp's agreement with fp32); int4-exact: the same blocks on float32 activations (same "
        "answers as fp32); int4-kv8: int4 with an 8-bit KV cache (about twice int4's decode speed at "
        "long context, a point or two less agreement); int4-fast: int8 kernels in two passes, close "
        "to fp32; fp32: all weights "
        "dequantized (default: int4)",
    )
    add_output_option(p)
    p.set_defaults(func=cmd_import)

    p = model.add_parser(
        "compile",
        help="build a Hugging Face checkpoint folder with onnxruntime-genai's model builder (needs torch)",
        description="Run onnxruntime-genai's model builder on a local Hugging Face checkpoint and put the "
        "result in the cache. Needs the optional extra: pip install 'foundry-jupyter[compile]'.",
    )
    p.add_argument("folder", help="a folder holding config.json, the weights and the tokenizer")
    p.add_argument("--alias", default=None, help="the name to use for it (default: the folder's name)")
    p.add_argument("--precision", choices=COMPILE_PRECISIONS, default="int4", help="default: int4")
    p.add_argument("--ep", choices=("cpu", "cuda"), default="cpu", help="execution provider (default: cpu)")
    add_output_option(p)
    p.set_defaults(func=cmd_compile)


def cmd_import(args: argparse.Namespace) -> int:
    from ..config import defaults
    from ..models.manager import ModelManager

    start = time.perf_counter()
    with Bars(Path(args.file).name, bars_wanted(args)) as bars:
        model = ModelManager(defaults()).import_gguf(
            args.file, alias=args.alias, precision=args.precision, progress=bars
        )
    return _report(args, model, "Imported", args.file, time.perf_counter() - start)


def cmd_compile(args: argparse.Namespace) -> int:
    from ..models.compile import compile_model

    start = time.perf_counter()
    with activity(Path(args.folder).name, "compiling with the model builder", args):
        model = compile_model(args.folder, alias=args.alias, precision=args.precision, ep=args.ep)
    return _report(args, model, "Compiled", args.folder, time.perf_counter() - start)


def _report(args: argparse.Namespace, model: CachedModel, verb: str, source: str, seconds: float) -> int:
    if wants_json(args):
        print_json({**model.to_dict(), "seconds": round(seconds, 2)})
    else:
        print(f"{verb} {source} as {model.alias} ({model.id}) in {seconds:.1f} s: {model.path}")
        print(f"Run it with: jupyter foundry model run {model.alias}")
    return 0
