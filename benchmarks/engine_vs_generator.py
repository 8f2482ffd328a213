"""Tokens/s and time to first token: ChatModel against a plain og.Generator loop.

    python benchmarks/engine_vs_generator.py                 # the built-in tiny model
    python benchmarks/engine_vs_generator.py path/to/model --max-tokens 128 --concurrency 4

Both sides answer the same chat prompt greedily on the same model folder. "ttft" is the time from the
call to the first generated token (prompt processing included); "tok/s" counts generated tokens over
the whole call. The concurrent rows run N different prompts at once and report aggregate tokens/s and
the slowest first token. ChatModel serves a lone request with og.Generator and batches concurrent
ones on og.Engine; each row names the og APIs that served it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime_genai as og

from foundry_jupyter.engine.model import ChatModel
from foundry_jupyter.engine.testmodel import build_tiny_model
from foundry_jupyter.engine.types import GenerationParams

QUESTION = "Explain in a few sentences what a Jupyter kernel does and why notebooks need one."


def messages(i: int = 0) -> list[dict[str, str]]:
    # The variant leads: prompts sharing most of their tokens would reuse each other's held generator.
    return [{"role": "user", "content": f"(variant {i}) {QUESTION}"}]


def generator_run(og_model: og.Model, ids: list[int], max_tokens: int) -> tuple[float, int, float]:
    """One plain og.Generator loop: (ttft s, generated tokens, total s)."""
    start = time.perf_counter()
    params = og.GeneratorParams(og_model)
    params.set_search_options(max_length=len(ids) + max_tokens, do_sample=False)
    generator = og.Generator(og_model, params)
    generator.append_tokens(np.asarray(ids, dtype=np.int32))
    ttft = 0.0
    count = 0
    while not generator.is_done():
        generator.generate_next_token()
        generator.get_next_tokens()
        count += 1
        if count == 1:
            ttft = time.perf_counter() - start
    return ttft, count, time.perf_counter() - start


BACKENDS: list[str] = []  # which og API served each ChatModel request


def served() -> str:
    """How many of the runs since BACKENDS was cleared each og API served."""
    names = {"og.Engine": "Engine", "og.Generator": "Generator"}
    return ", ".join(f"{BACKENDS.count(b)} {names[b]}" for b in names if b in BACKENDS)


def chatmodel_run(model: ChatModel, i: int, max_tokens: int) -> tuple[float, int, float]:
    start = time.perf_counter()
    ttft = 0.0
    usage = None
    stream = model.stream_chat(messages(i), GenerationParams(max_tokens=max_tokens, temperature=0))
    for delta in stream:
        if not ttft and delta.text:
            ttft = time.perf_counter() - start
        usage = delta.usage or usage
    assert usage is not None
    BACKENDS.append(stream.backend)
    return ttft, usage.completion_tokens, time.perf_counter() - start


def concurrent(fn, n: int) -> tuple[int, float, float]:
    """Run fn(i) for i < n on n threads at once: (total generated tokens, wall s, slowest ttft s)."""
    results: list[tuple[float, int, float]] = [(0.0, 0, 0.0)] * n
    barrier = threading.Barrier(n + 1)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return sum(r[1] for r in results), time.perf_counter() - start, max(r[0] for r in results)


def summarize(name: str, runs: list[tuple[float, int, float]]) -> dict[str, float | str]:
    return {
        "name": name,
        "ttft_ms": 1000 * statistics.median(r[0] for r in runs),
        "tokens_per_s": statistics.median(r[1] / r[2] for r in runs),
        "tokens": statistics.median(r[1] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", help="model folder (default: build the tiny model)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--ep", default=None, help="execution provider (default: what the folder names)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    tmp = None
    folder = Path(args.model) if args.model else None
    if folder is None:
        tmp = tempfile.TemporaryDirectory()
        folder = build_tiny_model(Path(tmp.name) / "tiny")

    model = ChatModel.load(folder, ep=args.ep)
    og_model = model._og_model  # the same loaded weights: the comparison is about the loop, not the load
    rows = []
    try:
        ids = model.encode_chat(messages())
        generator_run(og_model, ids, 4)  # warm-up both paths
        chatmodel_run(model, 0, 4)
        rows.append(
            summarize(
                "og.Generator loop", [generator_run(og_model, ids, args.max_tokens) for _ in range(args.runs)]
            )
        )
        BACKENDS.clear()
        lone = [chatmodel_run(model, 100 + r, args.max_tokens) for r in range(args.runs)]
        rows.append(summarize(f"ChatModel ({served()})", lone))

        n = args.concurrency
        all_ids = [model.encode_chat(messages(i)) for i in range(n)]
        tokens, wall, slowest = concurrent(lambda i: generator_run(og_model, all_ids[i], args.max_tokens), n)
        rows.append(
            {
                "name": f"og.Generator x{n} threads",
                "ttft_ms": 1000 * slowest,
                "tokens_per_s": tokens / wall,
                "tokens": tokens,
            }
        )
        BACKENDS.clear()
        tokens, wall, slowest = concurrent(lambda i: chatmodel_run(model, i, args.max_tokens), n)
        rows.append(
            {
                "name": f"ChatModel x{n} concurrent ({served()})",
                "ttft_ms": 1000 * slowest,
                "tokens_per_s": tokens / wall,
                "tokens": tokens,
            }
        )

        # A follow-up turn: the whole history resent (as OpenAI clients do), cold against continued.
        history = [{"role": "user", "content": QUESTION + " " + " ".join(["Explain the details."] * 20)}]
        answer = model.complete_chat(history, GenerationParams(max_tokens=args.max_tokens, temperature=0))
        history += [
            {"role": "assistant", "content": answer.text},
            {"role": "user", "content": "Shorter, please."},
        ]
        follow_ids = model.encode_chat(history)
        cold = generator_run(og_model, follow_ids, args.max_tokens)
        rows.append(
            {
                "name": "follow-up, cold Generator",
                "ttft_ms": 1000 * cold[0],
                "tokens_per_s": cold[1] / cold[2],
                "tokens": cold[1],
            }
        )
        start = time.perf_counter()
        ttft, usage = 0.0, None
        for delta in model.stream_chat(history, GenerationParams(max_tokens=args.max_tokens, temperature=0)):
            ttft = ttft or (time.perf_counter() - start if delta.text else 0.0)
            usage = delta.usage or usage
        assert usage is not None
        wall = time.perf_counter() - start
        rows.append(
            {
                "name": f"follow-up, ChatModel ({usage.cached_tokens}/{usage.prompt_tokens} cached)",
                "ttft_ms": 1000 * ttft,
                "tokens_per_s": usage.completion_tokens / wall,
                "tokens": usage.completion_tokens,
            }
        )
    finally:
        model.close()
        if tmp is not None:
            tmp.cleanup()

    if args.json:
        print(json.dumps({"model": str(folder), "ep": model.execution_provider, "rows": rows}, indent=2))
        return
    print(
        f"model: {folder}  ep: {model.execution_provider}  max_tokens: {args.max_tokens}  runs: {args.runs}"
    )
    print(f"{'':44} {'ttft ms':>9} {'tok/s':>9} {'tokens':>7}  (concurrent rows: slowest ttft)")
    for row in rows:
        print(f"{row['name']:44} {row['ttft_ms']:>9.1f} {row['tokens_per_s']:>9.1f} {row['tokens']:>7}")


if __name__ == "__main__":
    main()
