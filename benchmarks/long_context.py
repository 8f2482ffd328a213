"""Long context on an imported GGUF folder: prompt reading and decode speed at ~1k and ~4k tokens.

    python -m benchmarks.long_context prefill --model-dir DIR [--words 400] [--rounds 5] [--profile]
                                              [--chunk N] [--graph model.prompt.onnx]
    python -m benchmarks.long_context decode --model-dir DIR [--words 400,1450] [--tokens 64]
                                             [--llamacpp GGUF] [--profile] [--max-length N]

`prefill` reads one chat prompt through a plain onnxruntime session (the threads our engine gives
og), with every position's logits and with `logits_from` = S - 1 (the head on the last row alone),
and with `--chunk` N also N tokens at a time on the cache the chunks before left, alternating.
`decode` runs the raw og.Generator loop (as `raw_generator`) and, with `--llamacpp`, llama.cpp on the
same GGUF, alternating: prompt tokens over the prompt's time, then generated tokens over their own
time. `--profile` writes onnxruntime's per-node profile and prints the time per op type.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .clients import long_messages


def prompt_ids(model_dir: Path, words: int, salt: int, tokenizer: Any = None) -> list[int]:
    tokenizer = tokenizer or _tokenizer(model_dir)
    text = tokenizer.apply_chat_template(json.dumps(long_messages(salt, words)), add_generation_prompt=True)
    return [int(t) for t in tokenizer.encode(text)]


_TOKENIZERS: dict[Path, Any] = {}


def _tokenizer(model_dir: Path) -> Any:
    import onnxruntime_genai as og

    if model_dir not in _TOKENIZERS:
        _TOKENIZERS[model_dir] = og.Tokenizer(og.Model(og.Config(str(model_dir))))
    return _TOKENIZERS[model_dir]


def op_times(profile: Path, runs: slice = slice(None)) -> tuple[dict[str, float], int]:
    """Milliseconds per op type summed over the node events (kernel time) of the session runs that
    `runs` picks (in order: og's first run reads the prompt, each later one makes a token), and how
    many runs that was."""
    events = json.loads(profile.read_text())
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[runs]
    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        kernel = event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
        if kernel and any(start <= event["ts"] <= end for start, end in spans):
            per_op[event.get("args", {}).get("op_name", "?")] += event["dur"] / 1000
    return dict(per_op.most_common()), len(spans)


def print_ops(title: str, ops: dict[str, float], runs: int) -> None:
    total = sum(ops.values())
    print(f"{title}: {total / runs:.1f} ms per run in kernels")
    for op, ms in ops.items():
        if ms / total >= 0.005:
            print(f"  {op:34} {ms / runs:8.1f} ms  {100 * ms / total:5.1f}%")


class Prefill:
    """The decoder in a plain onnxruntime session, fed a prompt on an empty KV cache."""

    def __init__(
        self, model_dir: Path, threads: int, profile: bool = False, filename: str = "model.onnx"
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "prefill")
        self.session = ort.InferenceSession(
            str(model_dir / filename), options, providers=["CPUExecutionProvider"]
        )
        cfg = json.loads((model_dir / "genai_config.json").read_text())["model"]["decoder"]
        self.layers = cfg["num_hidden_layers"]
        self.kv_shape = (1, cfg["num_key_value_heads"], 0, cfg["head_size"])
        # An overridable initializer: listed apart from the required inputs.
        optional = {i.name for i in self.session.get_overridable_initializers()}
        self.has_logits_from = "logits_from" in optional

    def run(self, ids: list[int], last_row: bool, chunk: int = 0) -> tuple[float, float, np.ndarray]:
        """(wall seconds, this process's CPU seconds, the last row's logits) for `ids` on an empty
        cache: whole, or `chunk` tokens at a time on the cache the chunks before left."""
        empty = np.zeros(self.kv_shape, np.float32)
        cache = [empty] * (2 * self.layers)
        start, cpu = time.perf_counter(), time.process_time()
        step = chunk or len(ids)
        for at in range(0, len(ids), step):
            part = ids[at : at + step]
            feeds: dict[str, np.ndarray] = {
                "input_ids": np.asarray([part], np.int64),
                "attention_mask": np.ones((1, at + len(part)), np.int64),
            }
            for i in range(self.layers):
                feeds[f"past_key_values.{i}.key"] = cache[2 * i]
                feeds[f"past_key_values.{i}.value"] = cache[2 * i + 1]
            if last_row:
                feeds["logits_from"] = np.asarray(len(part) - 1, np.int64)
            logits, *cache = self.session.run(None, feeds)
        return time.perf_counter() - start, time.process_time() - cpu, logits[0, -1]

    def end_profiling(self) -> Path:
        return Path(self.session.end_profiling())


def prefill(args: argparse.Namespace) -> dict[str, Any]:
    from foundry_jupyter.engine.hardware import cpu_threads

    threads = args.threads or cpu_threads()
    ids = prompt_ids(args.model_dir, args.words, 1000)
    runner = Prefill(args.model_dir, threads, args.profile, args.graph)
    variants = {"all_rows": (False, 0)}
    if runner.has_logits_from:
        variants["last_row"] = (True, 0)
        if args.chunk:
            variants[f"last_row_chunks_of_{args.chunk}"] = (True, args.chunk)
    runner.run(ids[:64], False)  # warm-up: allocations and kernel set-up
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    last: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, (last_row, chunk) in variants.items():
            took, used, last[name] = runner.run(ids, last_row, chunk)
            seconds[name].append(took)
            cpu[name].append(used)
    out: dict[str, Any] = {"model_dir": str(args.model_dir), "graph": args.graph, "threads": threads}
    out["prompt_tokens"] = len(ids)
    for name in variants:
        med, med_cpu = statistics.median(seconds[name]), statistics.median(cpu[name])
        out[name] = {
            "median_ms": med * 1000,
            "prompt_tps": len(ids) / med,
            # CPU seconds (all threads) per prompt: steadier than wall time on a shared machine
            "median_cpu_ms": med_cpu * 1000,
            "prompt_tokens_per_cpu_s": len(ids) / med_cpu,
            "cpu_speedup": statistics.median(cpu["all_rows"]) / med_cpu,
            "last_row_max_abs_diff": float(np.abs(last[name] - last["all_rows"]).max()),
            "runs_ms": [round(t * 1000) for t in seconds[name]],
        }
    if args.profile:
        ops, runs = op_times(runner.end_profiling(), slice(1, None))  # after the warm-up
        print_ops("prefill (both variants)", ops, runs)
    return out


class OgLoop:
    """The raw og.Generator loop, prompt and decode timed apart; og's own profile with `profile`."""

    def __init__(self, model_dir: Path, threads: int = 0, profile: bool = False) -> None:
        import onnxruntime_genai as og

        from foundry_jupyter.engine.model import set_engine_threads

        self.og = og
        self.folder = model_dir
        if profile:
            self.folder = Path(tempfile.mkdtemp()) / model_dir.name
            self.folder.mkdir()
            for item in model_dir.iterdir():
                (self.folder / item.name).symlink_to(item)
            cfg_path = self.folder / "genai_config.json"
            cfg = json.loads(cfg_path.read_text())
            cfg_path.unlink()
            cfg["model"]["decoder"]["session_options"]["enable_profiling"] = str(self.folder / "og")
            cfg_path.write_text(json.dumps(cfg))
        cfg = json.loads((self.folder / "genai_config.json").read_text())
        config = og.Config(str(self.folder))
        set_engine_threads(config, cfg, "cpu")
        if threads:
            overlay = {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
            config.overlay(json.dumps(overlay))
        self.context_length = cfg["model"]["context_length"]
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)

    def run(self, ids: list[int], tokens: int, max_length: int = 0) -> dict[str, float]:
        og = self.og
        params = og.GeneratorParams(self.model)
        length = max_length or len(ids) + tokens
        params.set_search_options(do_sample=False, max_length=length, min_length=len(ids) + tokens)
        generator = og.Generator(self.model, params)
        start, prompt_cpu = time.perf_counter(), time.process_time()
        generator.append_tokens(np.asarray(ids, np.int32))
        generator.generate_next_token()  # the first token comes from the prompt's logits
        first, cpu = time.perf_counter(), time.process_time()
        prompt_cpu = cpu - prompt_cpu
        for _ in range(tokens - 1):
            generator.generate_next_token()
        end, cpu = time.perf_counter(), time.process_time() - cpu
        del generator
        return {
            "prompt_tokens": len(ids),
            "prompt_tps": len(ids) / (first - start),
            "decode_tps": (tokens - 1) / (end - first),
            "prompt_tokens_per_cpu_s": len(ids) / prompt_cpu,
            "decode_cpu_ms_per_token": cpu * 1000 / (tokens - 1),
        }

    def close(self) -> list[Path]:
        """Release og's session (which writes its profile, if any); the profiles written."""
        import gc

        del self.tokenizer, self.model
        gc.collect()
        return sorted(self.folder.glob("og*.json"))


def decode(args: argparse.Namespace) -> dict[str, Any]:
    words = [int(w) for w in args.words.split(",")]
    loop = OgLoop(args.model_dir, args.threads, args.profile)
    llama = None
    if args.llamacpp:
        from .llamacpp import LlamaCppProcess

        llama = LlamaCppProcess(args.llamacpp, args.model_dir, args.threads or 2).start()
    try:
        loop.run(prompt_ids(args.model_dir, 20, 999, loop.tokenizer), 4)  # warm-up
        results: dict[str, dict[str, list[dict[str, float]]]] = {"og": {}, "llama.cpp": {}}
        for r in range(args.rounds):
            for w in words:
                salt = 1000 + 100 * r + w
                ids = prompt_ids(args.model_dir, w, salt, loop.tokenizer)
                got = loop.run(ids, args.tokens, args.max_length)
                results["og"].setdefault(str(w), []).append(got)
                print(f"og        {w:5} words: {got}", flush=True)
                if llama is not None:
                    # Its CPU time: one request of 1 token (the prompt), then the same with all tokens.
                    before = _cpu_s(llama.pid)
                    llama.prompts(f"{w}", w, 1, 1, salt_base=salt)
                    prompt_only = _cpu_s(llama.pid) - before
                    res = llama.prompts(f"{w}", w, 1, args.tokens, salt_base=salt).requests[0]
                    whole = _cpu_s(llama.pid) - before - prompt_only
                    row = {
                        "prompt_tokens": res.prompt_tokens,
                        "prompt_tps": res.prompt_tokens / res.ttft,
                        "decode_tps": res.decode_tps,
                        "prompt_tokens_per_cpu_s": res.prompt_tokens / prompt_only,
                        "decode_cpu_ms_per_token": (whole - prompt_only) * 1000 / (args.tokens - 1),
                    }
                    results["llama.cpp"].setdefault(str(w), []).append(row)
                    print(f"llama.cpp {w:5} words: {row}", flush=True)
    finally:
        if llama is not None:
            llama.stop()
    profiles = loop.close()
    if args.profile:
        for path in profiles:
            # og's runs: the warm-up's prompt and tokens, then per round and size a prompt and tokens.
            ops, runs = op_times(path, slice(-(args.tokens - 1), None))
            print_ops(f"og, the last prompt's {runs} decode steps", ops, runs)
    summary: dict[str, Any] = {}
    for system, rows in results.items():
        for w, runs in rows.items():
            summary[f"{system} {w} words"] = {
                key: statistics.median(run[key] for run in runs) for key in run_keys(runs)
            }
    return summary


def _cpu_s(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def run_keys(runs: list[dict[str, float]]) -> list[str]:
    return [key for key in runs[0] if all(key in run for run in runs)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.long_context", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("prefill", "decode"):
        s = sub.add_parser(name)
        s.add_argument("--model-dir", type=Path, required=True)
        s.add_argument("--threads", type=int, default=0, help="0: as our engine sets them (llama.cpp: 2)")
        s.add_argument("--rounds", type=int, default=3)
        s.add_argument("--profile", action="store_true")
    sub.choices["prefill"].add_argument("--words", type=int, default=400, help="~1.1k tokens for SmolLM2")
    sub.choices["prefill"].add_argument("--chunk", type=int, default=0, help="also read in chunks of N")
    sub.choices["prefill"].add_argument(
        "--graph", default="model.onnx", help="model.onnx or model.prompt.onnx (int4)"
    )
    sub.choices["decode"].add_argument("--words", default="400,1450", help="~1.1k and ~4.1k tokens")
    sub.choices["decode"].add_argument("--tokens", type=int, default=64)
    sub.choices["decode"].add_argument("--max-length", type=int, default=0, help="0: prompt + tokens")
    sub.choices["decode"].add_argument("--llamacpp", type=Path, default=None, help="the GGUF, for llama.cpp")
    args = p.parse_args(argv)
    out = prefill(args) if args.command == "prefill" else decode(args)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
