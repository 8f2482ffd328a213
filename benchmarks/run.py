"""One command for the whole comparison: `python -m benchmarks.run` (add `--quick` for a smoke run).

Systems, each on the same model folder: `ours` (the REST API of a real Jupyter server with the
foundry_jupyter extension), `peer` (Foundry Local's runtime, foundry-local-sdk, in its own venv) and
`raw` (onnxruntime-genai in-process: the limit). All three stay up for a model; every scenario runs
on each in turn, in an order that rotates every round, so machine drift hits all of them alike.
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
from .clients import Endpoint, load_with_polling, run_load, run_second_turn
from .models import OUT, BenchModel, prepare
from .monitor import MemoryMonitor
from .ours import JupyterServer, import_time
from .raw_generator import RawProcess
from .rawhttp import Connection
from .stats import LoadResult, TurnResult, percentile

SYSTEMS = ("ours", "peer", "raw")
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
    p.add_argument("--models", default="tiny,smollm2-fp32,smollm2-int4")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--clients", default="1,4,8")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every scenario per system (tiny)")
    p.add_argument("--big-rounds", type=int, default=1, help="rounds for the SmolLM2 models")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--requests", type=int, default=0, help="requests per load (0: per model size)")
    p.add_argument("--turn-rounds", type=int, default=3)
    p.add_argument("--startup-runs", type=int, default=3)
    p.add_argument("--cache", type=Path, default=OUT / "cache", help="benchmark model cache (reused)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.clients, args.rounds, args.max_tokens = "tiny", "1,2", 1, 8
        args.requests, args.turn_rounds, args.startup_runs = 2, 1, 0
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
        yield handles


def endpoint(name: str, handle: Any) -> Endpoint:
    if name == "ours":
        return Endpoint(handle.openai_base, handle.headers)
    return Endpoint(handle.base_url)


def measure_load(name: str, handle: Any, model: BenchModel, clients: int, per_client: int, max_tokens: int):
    if name == "raw":
        return handle.load(model.label, clients, per_client, max_tokens)
    kwargs = dict(
        system=name,
        label=model.label,
        model=model.model_id,
        clients=clients,
        requests_per_client=per_client,
        max_tokens=max_tokens,
        settle=handle.settle if name == "ours" else None,
    )
    return asyncio.run(run_load(endpoint(name, handle), **kwargs))


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
    models = prepare([m for m in args.models.split(",") if m], args.cache)
    if args.startup_runs:
        notes["startup"] = measure_startup(args)
        print(f"server start-up: {notes['startup']}", flush=True)
    loads: list[dict[str, Any]] = []
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
                for i, name in enumerate(order):
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
    results.update(loads=loads, turns=turns, status=status, memory_mb=memory.peaks_mb())
    return results


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
    errors = sum(row["errors"] for row in results["loads"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
