"""A `previous_response_id` turn against a cold prompt of the same length.

`python -m benchmarks.responses_chain [--models tiny,smollm2-fp32] [--rounds 5]`.

Each round: a first response (a 128-token answer), then the next turn twice, each asking for one
token, so the time is the prompt's: chained with `previous_response_id` (the runner continues the
conversation it holds), and the same conversation sent whole under other instructions of the same
length (nothing held matches it). Prints a Markdown row per model.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import time

from openai import OpenAI

from .models import OUT, prepare
from .ours import JupyterServer

QUESTION = "Tell me about the history of tea, from China to Europe."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(client: OpenAI, model: str, rounds: int, answer_tokens: int) -> dict[str, float]:
    chained_ms, cold_ms, chained_cached, cold_cached, tokens = [], [], [], [], []
    for _ in range(rounds):
        session = f"Session {secrets.token_hex(4)}."  # a fresh prefix per round: nothing held matches it
        common = {"model": model, "temperature": 0, "instructions": session}
        first = client.responses.create(**common, input=QUESTION, max_output_tokens=answer_tokens)
        start = time.perf_counter()
        chained = client.responses.create(
            **common, input="Go on.", previous_response_id=first.id, max_output_tokens=1
        )
        chained_ms.append((time.perf_counter() - start) * 1000)
        history = [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "Go on."},
        ]
        other = f"Session {secrets.token_hex(4)}."
        start = time.perf_counter()
        cold = client.responses.create(
            **{**common, "instructions": other}, input=history, max_output_tokens=1, store=False
        )
        cold_ms.append((time.perf_counter() - start) * 1000)
        chained_cached.append(chained.usage.input_tokens_details.cached_tokens)
        cold_cached.append(cold.usage.input_tokens_details.cached_tokens)
        tokens.append((chained.usage.input_tokens, cold.usage.input_tokens))
    return {
        "input_tokens": statistics.median(t[0] for t in tokens),
        "cold_input_tokens": statistics.median(t[1] for t in tokens),
        "chained_cached": statistics.median(chained_cached),
        "cold_cached": statistics.median(cold_cached),
        "chained_ms": statistics.median(chained_ms),
        "cold_ms": statistics.median(cold_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-fp32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--answer-tokens", type=int, default=128)
    args = parser.parse_args()
    cache = OUT / "cache"
    models = prepare(args.models.split(","), cache)
    print(
        "| model | input tokens (chained / cold) | cached (chained / cold) | chained ms p50 | cold ms p50 |"
    )
    print("|---|---:|---:|---:|---:|")
    with JupyterServer(cache, free_port(), OUT / "responses-chain") as server:
        for model in models:
            server.load(model.model_id)
            client = OpenAI(base_url=server.openai_base, api_key=server.token, timeout=600)
            client.responses.create(model=model.model_id, input="warm up", max_output_tokens=2, store=False)
            r = measure(client, model.model_id, args.rounds, args.answer_tokens)
            print(
                f"| {model.label} | {r['input_tokens']:.0f} / {r['cold_input_tokens']:.0f} | "
                f"{r['chained_cached']:.0f} / {r['cold_cached']:.0f} | "
                f"{r['chained_ms']:.1f} | {r['cold_ms']:.1f} |"
            )


if __name__ == "__main__":
    main()
