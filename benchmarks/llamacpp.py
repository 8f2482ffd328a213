"""llama.cpp (what Ollama and LM Studio run on a CPU) as a peer, on the same GGUF our import reads.

node-llama-cpp ships llama.cpp as prebuilt binaries in npm packages, so no compiler and no download
outside the npm registry is needed: `python -m benchmarks.llamacpp setup` installs it (pinned: newer
releases' lock files name platform builds that are not served) into `benchmarks/out/llamacpp-peer`
(override with FOUNDRY_BENCH_LLAMACPP_DIR). `llamacpp.mjs` runs there as a worker process that loads
the GGUF once and answers JSON jobs; this driver gives it the same chat prompts as our server (our
folder's chat template, rendered here and tokenized by llama.cpp with special tokens), the same
token counts, 2 threads and greedy sampling. Its sequences share one context, so llama.cpp batches
them as it does for parallel slots.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .clients import load_messages, long_messages, stagger_offsets
from .stats import LoadResult, RequestTiming
from .worker import JsonLineWorker

PACKAGE = "node-llama-cpp@3.21.1"
SCRIPT = Path(__file__).resolve().parent / "llamacpp.mjs"
DEFAULT_DIR = Path(__file__).resolve().parent / "out" / "llamacpp-peer"
SYSTEM = "llama.cpp"


def peer_dir() -> Path:
    return Path(os.environ.get("FOUNDRY_BENCH_LLAMACPP_DIR") or DEFAULT_DIR)


def llamacpp_available(folder: Path | None = None) -> str | None:
    """None when the llama.cpp peer can run, else the reason it cannot."""
    if shutil.which("node") is None:
        return "Node.js is not installed (node-llama-cpp needs node >= 20)"
    folder = folder or peer_dir()
    if not (folder / "node_modules" / "node-llama-cpp" / "package.json").exists():
        return f"no node-llama-cpp in {folder} (install it: python -m benchmarks.llamacpp setup, ~1 min)"
    return None


def setup(folder: Path | None = None) -> Path:
    """Install node-llama-cpp (prebuilt llama.cpp binaries) into `folder` with npm."""
    folder = folder or peer_dir()
    installed = folder / "node_modules" / "node-llama-cpp" / "package.json"
    if installed.exists() and json.loads(installed.read_text())["version"] == PACKAGE.rpartition("@")[2]:
        return folder  # already there: a second setup only checks
    if shutil.which("npm") is None:
        raise SystemExit("npm is not installed: the llama.cpp peer needs Node.js 20 or newer")
    folder.mkdir(parents=True, exist_ok=True)
    package = folder / "package.json"
    if not package.exists():
        package.write_text(json.dumps({"name": "llamacpp-peer", "private": True, "type": "module"}))
    command = ["npm", "install", "--save-exact", "--no-audit", "--no-fund", "--loglevel=error", PACKAGE]
    cpu_build = _linux_cpu_build()
    if cpu_build:
        # Only the CPU build: the optional CUDA and Vulkan builds are ~10x its size and unused here.
        command += ["--omit=optional", cpu_build]
    subprocess.run(command, cwd=folder, check=True)
    return folder


def _linux_cpu_build() -> str | None:
    """node-llama-cpp's prebuilt CPU package for this Linux machine, None elsewhere (npm picks)."""
    import platform

    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine())
    if sys.platform != "linux" or arch is None:
        return None
    return f"@node-llama-cpp/linux-{arch}@{PACKAGE.rpartition('@')[2]}"


class ChatTemplate:
    """Renders chat messages with a model folder's own template, as our server's tokenizer does."""

    def __init__(self, model_dir: Path) -> None:
        import jinja2

        config = json.loads((model_dir / "tokenizer_config.json").read_text())
        self.template = jinja2.Environment().from_string(config["chat_template"])
        self.special = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}

    def __call__(self, messages: list[dict[str, str]]) -> str:
        return self.template.render(messages=messages, add_generation_prompt=True, **self.special)


class LlamaCppProcess(JsonLineWorker):
    """One node worker holding `gguf` in llama.cpp, prompted with `model_dir`'s chat template."""

    label = "llama.cpp worker"

    def __init__(self, gguf: Path, model_dir: Path, threads: int = 2) -> None:
        super().__init__()
        self.gguf = gguf
        self.template = ChatTemplate(model_dir)
        self.threads = threads
        self.info: dict[str, Any] = {}

    def start(self) -> LlamaCppProcess:
        folder = peer_dir()
        # Node resolves `import "node-llama-cpp"` from the script's own folder.
        shutil.copyfile(SCRIPT, folder / SCRIPT.name)
        cmd = ["node", str(folder / SCRIPT.name), str(self.gguf), str(self.threads)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=folder
        )
        self.info = self._read()
        return self

    def _run(
        self, clients: list[list[dict[str, Any]]], per_sequence: int
    ) -> tuple[float, list[RequestTiming]]:
        data = self.call("run", clients=clients, per_sequence=per_sequence)
        timings = [
            RequestTiming(
                ttft=r["ttft_ms"] / 1000,
                total=r["total_ms"] / 1000,
                completion_tokens=len(r["tokens"]),
                prompt_tokens=r["prompt_tokens"],
            )
            for requests in data["clients"]
            for r in requests
        ]
        return data["wall_ms"] / 1000, timings

    def load(
        self,
        label: str,
        clients: int,
        requests_per_client: int,
        max_tokens: int,
        stagger_s: float = 0.0,
        seed: int = 0,
    ) -> LoadResult:
        """As `clients.run_load`: `clients` sequences at once, requests back to back, the same prompts
        and (with `stagger_s`) the same start offsets; one short untimed request per sequence first."""
        per_sequence = 1024
        warm = [[{"text": self.template(load_messages(i, 999)), "max_tokens": 2}] for i in range(clients)]
        self._run(warm, per_sequence)
        offsets = stagger_offsets(clients, stagger_s, seed)
        jobs = [
            [
                {
                    "text": self.template(load_messages(i, n)),
                    "max_tokens": max_tokens,
                    "delay_ms": offsets[i] * 1000 if n == 0 else 0,
                }
                for n in range(requests_per_client)
            ]
            for i in range(clients)
        ]
        wall, timings = self._run(jobs, per_sequence)
        return LoadResult(SYSTEM, label, clients, wall, requests=timings)

    def prompts(
        self, label: str, words: int, rounds: int, max_tokens: int, salt_base: int = 1000
    ) -> LoadResult:
        """As `clients.run_prompts`: long prompts one at a time, one sequence sized to hold them."""
        texts = [self.template(long_messages(salt_base + r, words)) for r in range(rounds)]
        longest = max(len(self.call("tokenize", text=t)["ids"]) for t in texts)
        per_sequence = (longest + max_tokens + 1023) // 1024 * 1024
        self._run([[{"text": self.template(load_messages(0, 999)), "max_tokens": 2}]], per_sequence)
        start = time.perf_counter()
        _, timings = self._run([[{"text": t, "max_tokens": max_tokens} for t in texts]], per_sequence)
        return LoadResult(SYSTEM, label, 1, time.perf_counter() - start, requests=timings)

    def greedy(self, ids: list[int], max_tokens: int) -> list[int]:
        """llama.cpp's greedy answer ids after the prompt `ids` (stops at an end-of-generation token)."""
        per_sequence = (len(ids) + max_tokens + 1023) // 1024 * 1024
        data = self.call("run", clients=[[{"ids": ids, "max_tokens": max_tokens}]], per_sequence=per_sequence)
        return data["clients"][0][0]["tokens"]

    def top1(self, prompt: list[int], answer: list[int]) -> list[int | None]:
        """Teacher-forced: llama.cpp's greedy choice at each answer position, given `answer` so far."""
        ids = prompt + answer
        per_sequence = (len(ids) + 1023) // 1024 * 1024
        return self.call("top1", ids=ids, **{"from": len(prompt)}, per_sequence=per_sequence)["next"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.llamacpp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help=f"install {PACKAGE} (prebuilt llama.cpp) into {DEFAULT_DIR}")
    args = parser.parse_args(argv)
    if args.command == "setup":
        print(setup())
    return 0


if __name__ == "__main__":
    sys.exit(main())
