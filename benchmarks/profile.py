"""Profile our server and its runner with py-spy while a load runs: `python -m benchmarks.profile`.

Writes py-spy's collapsed stacks (and a flame graph SVG) per process under benchmarks/out/profiles
and prints the functions with the most samples (own time and inclusive), for routing speed work.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from .clients import Endpoint, run_load
from .models import OUT, prepare
from .ours import JupyterServer
from .run import free_port


def summarize(collapsed: Path, top: int = 18) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    lines = [f"{collapsed.name}: {total} samples", "  own time:"]
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["  inclusive:"]
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--requests", type=int, default=40, help="per client")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--out", type=Path, default=OUT / "profiles")
    args = p.parse_args(argv)
    if shutil.which("py-spy") is None:
        sys.exit("py-spy is needed: pip install py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    model = prepare([args.model], OUT / "cache")[0]
    with JupyterServer(OUT / "cache", free_port(), OUT / "work" / "profile") as server:
        server.load(model.model_id)
        runner = psutil.Process(server.pid).children(recursive=True)[0].pid
        tag = f"{args.model}-x{args.clients}"
        spies = []
        for name, pid in (("server", server.pid), ("runner", runner)):
            for fmt, ext in (("raw", "txt"), ("flamegraph", "svg")):
                out = args.out / f"{tag}-{name}.{ext}"
                cmd = ["py-spy", "record", "-p", str(pid), "-d", str(args.seconds), "-r", "200", "-f", fmt]
                spies.append(
                    subprocess.Popen(
                        [*cmd, "-o", str(out), "--nonblocking"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        endpoint = Endpoint(server.openai_base, server.headers)
        load = threading.Thread(
            target=lambda: print(
                asyncio.run(
                    run_load(
                        endpoint,
                        system="ours",
                        label=args.model,
                        model=model.model_id,
                        clients=args.clients,
                        requests_per_client=args.requests,
                        max_tokens=args.max_tokens,
                    )
                ).summary()
            )
        )
        load.start()
        for spy in spies:
            spy.wait(timeout=args.seconds + 60)
        load.join(timeout=600)
        for name in ("server", "runner"):
            print(summarize(args.out / f"{tag}-{name}.txt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
