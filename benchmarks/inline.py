"""Inline completion while typing: how soon the first ghost text arrives.

`python -m benchmarks.inline [--model smollm2-fp32] [--keystrokes 40] [--gap-ms 120] [--debounce-ms 150]`

What the JupyterLab provider does, against a real `jupyter server` with the extension: a notebook's
cells above (about 2,000 SmolLM2 tokens of Python) and the current cell up to the cursor go to
`POST foundry/v1/completions` (greedy, streamed; with `suffix` when the model has FIM tokens). Each
keystroke extends the prefix by one character: the previous request, still streaming `--gap-ms` after
its first text, is cancelled by closing its connection, and the next one is sent `--debounce-ms` later
(the provider's default pause). The figure is the time from sending a request to its first non-empty
text, over every request after the first (the first reads the whole context cold and is reported
apart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from .models import OUT, prepare
from .ours import JupyterServer
from .rawhttp import Connection
from .run import free_port
from .stats import percentile

PATH = "/foundry/v1/completions"
TYPED = "summary = records.groupby('city').agg(total=('amount', 'sum'), visits=('id', 'count'))"
GOAL_P50_MS = 300.0


def notebook_context(cells: int = 12) -> str:
    """The cells above the cursor: plausible analysis code, different in every cell."""
    topics = ["sales", "visits", "weather", "orders", "sensors", "payments", "users", "trips"]
    out = ["import json\nimport math\nfrom pathlib import Path\n\nimport pandas as pd\n"]
    for i in range(cells):
        t = topics[i % len(topics)]
        out.append(
            f"def load_{t}_{i}(path: Path) -> pd.DataFrame:\n"
            f'    """Read the {t} export number {i} and clean its columns."""\n'
            f"    frame = pd.read_json(path / '{t}_{i}.jsonl', lines=True)\n"
            f"    frame.columns = [c.strip().lower() for c in frame.columns]\n"
            f"    frame = frame.dropna(subset=['id', 'amount'])\n"
            f"    frame['amount'] = frame['amount'].clip(lower=0) * {1 + i % 5}\n"
            f"    return frame[frame['amount'] > {i * 3}]\n\n\n"
            f"{t}_{i} = load_{t}_{i}(Path('data'))\n"
            f"print(len({t}_{i}), {t}_{i}['amount'].mean())\n"
        )
    out.append("records = pd.concat([sales_0, visits_1, orders_3], ignore_index=True)\n")
    return "\n\n".join(out) + "\n\n"


def body(model: str, prompt: str, suffix: str | None, max_tokens: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stop": ["\n\n\n"],
    }
    if suffix:
        data["suffix"] = suffix
    return data


async def first_text(conn: Connection, request: dict[str, Any], gap_s: float) -> tuple[float, str]:
    """Seconds to the first non-empty text; then reads on for `gap_s` (the ghost text streaming while
    the user types) and leaves, closing the connection as the browser's abort does."""
    start = time.perf_counter()
    ttft: float | None = None
    text = ""
    pending = b""
    try:
        async for data in conn.stream("POST", PATH, request):
            pending += data
            *events, pending = pending.split(b"\n\n")
            for event in events:
                payload = event.removeprefix(b"data:").strip()
                if not payload or payload == b"[DONE]":
                    continue
                for choice in json.loads(payload).get("choices") or ():
                    if choice.get("text") and ttft is None:
                        ttft = time.perf_counter() - start
                    text += choice.get("text") or ""
            if ttft is not None and time.perf_counter() - start - ttft >= gap_s:
                break
    finally:
        await conn.close()  # cancels the request if it is still running
    return (time.perf_counter() - start if ttft is None else ttft), text


async def measure(server: JupyterServer, model: str, args: argparse.Namespace) -> dict[str, Any]:
    context = notebook_context(args.cells)
    suffix = "\n\nprint(summary.head())\n" if args.fim else None
    conn = Connection(server.url, server.headers, timeout_s=300)
    # The first request reads the whole context cold (and says how long it is).
    cold_body = {**body(model, context, suffix, 1), "stream": False}
    start = time.perf_counter()
    cold = json.loads(b"".join([p async for p in conn.stream("POST", PATH, cold_body)]))
    cold_s = time.perf_counter() - start
    timings: list[float] = []
    for n in range(1, args.keystrokes + 1):
        prefix = context + TYPED[: n % len(TYPED) or len(TYPED)]
        ttft, _ = await first_text(conn, body(model, prefix, suffix, args.max_tokens), args.gap_ms / 1000)
        await asyncio.sleep(args.debounce_ms / 1000)
        timings.append(ttft * 1000)
        if args.verbose:
            print(f"  keystroke {n:3d}: first text after {ttft * 1000:7.1f} ms", file=sys.stderr)
    # One more, whole, to see how much of the prompt the server did not read again, and what one token
    # costs at this context length on this machine now (the floor under the first ghost text).
    last = {**body(model, context + TYPED + " ", suffix, 8), "stream": False, "stop": None}
    start = time.perf_counter()
    whole = json.loads(b"".join([p async for p in conn.stream("POST", PATH, last)]))
    whole_s = time.perf_counter() - start
    await conn.close()
    usage = whole["usage"]
    return {
        "model": model,
        "fim": bool(suffix),
        "context_tokens": cold["usage"]["prompt_tokens"],
        "first_request_ms": round(cold_s * 1000, 1),
        "keystrokes": len(timings),
        "gap_ms": args.gap_ms,
        "debounce_ms": args.debounce_ms,
        "p50_ms": round(percentile(timings, 50), 1),
        "p90_ms": round(percentile(timings, 90), 1),
        "max_ms": round(max(timings), 1),
        "last_prompt_tokens": usage["prompt_tokens"],
        "last_cached_tokens": usage["prompt_tokens_details"]["cached_tokens"],
        "ms_per_token": round(whole_s * 1000 / max(1, usage["completion_tokens"]), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-fp32", help="tiny, smollm2-fp32 or smollm2-int4")
    parser.add_argument("--keystrokes", type=int, default=40)
    parser.add_argument("--gap-ms", type=float, default=120.0, help="time between first text and next key")
    parser.add_argument("--debounce-ms", type=float, default=150.0, help="from a cancel to the next request")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--cells", type=int, default=12, help="cells above the cursor (12: ~2k tokens)")
    parser.add_argument("--fim", action="store_true", help="send a suffix (models with FIM tokens)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    [bench_model] = prepare([args.model], args.out / "cache")
    with JupyterServer(args.out / "cache", free_port(), args.out / "inline-server") as server:
        server.load(bench_model.model_id)
        result = asyncio.run(measure(server, bench_model.model_id, args))
    result["label"] = bench_model.label
    print(json.dumps(result))
    verdict = "meets" if result["p50_ms"] <= GOAL_P50_MS else "misses"
    print(
        f"{bench_model.label}: {result['context_tokens']} tokens of context; first request "
        f"{result['first_request_ms']:.0f} ms; then first ghost text p50 {result['p50_ms']:.0f} ms, "
        f"p90 {result['p90_ms']:.0f} ms over {result['keystrokes']} keystrokes; "
        f"{result['ms_per_token']:.0f} ms a token at this length "
        f"({verdict} the {GOAL_P50_MS:.0f} ms goal)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
