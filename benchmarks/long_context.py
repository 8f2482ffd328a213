"""Long context on an imported GGUF folder: prompt reading and decode speed at ~1k and ~4k tokens.

    python -m benchmarks.long_context prefill --model-dir DIR [--words 400] [--rounds 5] [--profile]
    python -m benchmarks.long_context decode --model-dir DIR [--words 400,1450] [--tokens 64]
                                             [--llamacpp GGUF] [--profile] [--max-length N]

`prefill` reads one chat prompt through a plain onnxruntime session (the threads our engine gives
og), with every position's logits and with `logits_from` = S - 1 (the head on the last row alone),
alternating. `decode` runs the raw og.Generator loop (as `raw_generator`) and, with `--llamacpp`,
llama.cpp on the same GGUF, alternating: prompt tokens over the prompt's time, then generated tokens
over their own time. `--profile` writes onnxruntime's per-node profile and prints the time per op type.
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


def prompt_ids(model_dir: Path, words: int, salt: int) -> list[int]:
    tokenizer = _tokenizer(model_dir)
    text = tokenizer.apply_chat_template(json.dumps(long_messages(salt, words)), add_generation_prompt=True)
    return [int(t) for t in tokenizer.encode(text)]


_TOKENIZERS: dict[Path, Any] = {}


def _tokenizer(model_dir: Path) -> Any:
    import onnxruntime_genai as og

    if model_dir not in _TOKENIZERS:
        _TOKENIZERS[model_dir] = og.Tokenizer(og.Model(og.Config(str(model_dir))))
    return _TOKENIZERS[model_dir]


def op_times(profile: Path) -> dict[str, float]:
    """Milliseconds per op type summed over a profile's node events (kernel time)."""
    per_op: collections.Counter[str] = collections.Counter()
    for event in json.loads(profile.read_text()):
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            per_op[event.get("args", {}).get("op_name", "?")] += event["dur"] / 1000
    return dict(per_op.most_common())


def print_ops(title: str, ops: dict[str, float], runs: int) -> None:
    total = sum(ops.values())
    print(f"{title}: {total / runs:.1f} ms per run in kernels")
    for op, ms in ops.items():
        if ms / total >= 0.005:
            print(f"  {op:34} {ms / runs:8.1f} ms  {100 * ms / total:5.1f}%")


class Prefill:
    """The decoder in a plain onnxruntime session, fed a prompt on an empty KV cache."""

    def __init__(self, model_dir: Path, threads: int, profile: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "prefill")
        self.session = ort.InferenceSession(
            str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        cfg = json.loads((model_dir / "genai_config.json").read_text())["model"]["decoder"]
        self.layers = cfg["num_hidden_layers"]
        self.kv_shape = (1, cfg["num_key_value_heads"], 0, cfg["head_size"])
        # An overridable initializer: listed apart from the required inputs.
        optional = {i.name for i in self.session.get_overridable_initializers()}
        self.has_logits_from = "logits_from" in optional

    def run(self, ids: list[int], logits_from: int | None) -> tuple[float, float, np.ndarray]:
        """(wall seconds, this process's CPU seconds, the last row's logits)."""
        feeds: dict[str, np.ndarray] = {
            "input_ids": np.asarray([ids], np.int64),
            "attention_mask": np.ones((1, len(ids)), np.int64),
        }
        empty = np.zeros(self.kv_shape, np.float32)
        for i in range(self.layers):
            feeds[f"past_key_values.{i}.key"] = feeds[f"past_key_values.{i}.value"] = empty
        if logits_from is not None:
            feeds["logits_from"] = np.asarray(logits_from, np.int64)
        start, cpu = time.perf_counter(), time.process_time()
        logits = self.session.run(["logits"], feeds)[0]
        return time.perf_counter() - start, time.process_time() - cpu, logits[0, -1]

    def end_profiling(self) -> Path:
        return Path(self.session.end_profiling())


def prefill(args: argparse.Namespace) -> dict[str, Any]:
    from foundry_jupyter.engine.hardware import cpu_threads

    threads = args.threads or cpu_threads()
    ids = prompt_ids(args.model_dir, args.words, 1000)
    runner = Prefill(args.model_dir, threads, args.profile)
    variants: list[int | None] = [None, len(ids) - 1] if runner.has_logits_from else [None]
    runner.run(ids[:64], None)  # warm-up: allocations and kernel set-up
    seconds: dict[str, list[float]] = {str(v): [] for v in variants}
    cpu: dict[str, list[float]] = {str(v): [] for v in variants}
    last: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for v in variants:
            took, used, last[str(v)] = runner.run(ids, v)
            seconds[str(v)].append(took)
            cpu[str(v)].append(used)
    out: dict[str, Any] = {"model_dir": str(args.model_dir), "prompt_tokens": len(ids), "threads": threads}
    for v in variants:
        med, med_cpu = statistics.median(seconds[str(v)]), statistics.median(cpu[str(v)])
        name = "all_rows" if v is None else "last_row"
        out[name] = {
            "median_ms": med * 1000,
            "prompt_tps": len(ids) / med,
            # CPU seconds (all threads) per prompt: steadier than wall time on a shared machine
            "median_cpu_ms": med_cpu * 1000,
            "prompt_tokens_per_cpu_s": len(ids) / med_cpu,
            "runs_ms": [round(t * 1000) for t in seconds[str(v)]],
        }
    if len(variants) == 2:
        out["last_row_max_abs_diff"] = float(np.abs(last["None"] - last[str(len(ids) - 1)]).max())
        out["speedup"] = out["all_rows"]["median_ms"] / out["last_row"]["median_ms"]
        out["cpu_speedup"] = out["all_rows"]["median_cpu_ms"] / out["last_row"]["median_cpu_ms"]
    if args.profile:
        print_ops("prefill (both variants)", op_times(runner.end_profiling()), args.rounds * len(variants))
    return out


class OgLoop:
    """The raw og.Generator loop, prompt and decode timed apart; og's own profile with `profile`."""

    def __init__(self, model_dir: Path, profile: bool = False) -> None:
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
        self.context_length = cfg["model"]["context_length"]
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)

    def run(self, ids: list[int], tokens: int, max_length: int = 0) -> dict[str, float]:
        og = self.og
        params = og.GeneratorParams(self.model)
        length = max_length or len(ids) + tokens
        params.set_search_options(do_sample=False, max_length=length, min_length=len(ids) + tokens)
        generator = og.Generator(self.model, params)
        start = time.perf_counter()
        generator.append_tokens(np.asarray(ids, np.int32))
        generator.generate_next_token()  # the first token comes from the prompt's logits
        first = time.perf_counter()
        for _ in range(tokens - 1):
            generator.generate_next_token()
        end = time.perf_counter()
        del generator
        return {
            "prompt_tokens": len(ids),
            "prompt_tps": len(ids) / (first - start),
            "decode_tps": (tokens - 1) / (end - first),
        }

    def profiles(self) -> list[Path]:
        return sorted(self.folder.parent.glob("og*.json"))


def decode(args: argparse.Namespace) -> dict[str, Any]:
    words = [int(w) for w in args.words.split(",")]
    loop = OgLoop(args.model_dir, args.profile)
    llama = None
    if args.llamacpp:
        from .llamacpp import LlamaCppProcess

        llama = LlamaCppProcess(args.llamacpp, args.model_dir, args.threads or 2).start()
    try:
        loop.run(prompt_ids(args.model_dir, 20, 999), 4)  # warm-up
        results: dict[str, dict[str, list[dict[str, float]]]] = {"og": {}, "llama.cpp": {}}
        for r in range(args.rounds):
            for w in words:
                salt = 1000 + 100 * r + w
                ids = prompt_ids(args.model_dir, w, salt)
                got = loop.run(ids, args.tokens, args.max_length)
                results["og"].setdefault(str(w), []).append(got)
                print(f"og        {w:5} words: {got}", flush=True)
                if llama is not None:
                    res = llama.prompts(f"{w}", w, 1, args.tokens, salt_base=salt).requests[0]
                    row = {
                        "prompt_tokens": res.prompt_tokens,
                        "prompt_tps": res.prompt_tokens / res.ttft,
                        "decode_tps": res.decode_tps,
                    }
                    results["llama.cpp"].setdefault(str(w), []).append(row)
                    print(f"llama.cpp {w:5} words: {row}", flush=True)
    finally:
        if llama is not None:
            llama.stop()
    if args.profile:
        del loop.model
        for path in loop.profiles():
            print_ops(f"og session profile {path.name}", op_times(path), 1)
    summary: dict[str, Any] = {}
    for system, rows in results.items():
        for w, runs in rows.items():
            summary[f"{system} {w} words"] = {
                key: statistics.median(run[key] for run in runs)
                for key in ("prompt_tokens", "prompt_tps", "decode_tps")
            }
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.long_context", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("prefill", "decode"):
        s = sub.add_parser(name)
        s.add_argument("--model-dir", type=Path, required=True)
        s.add_argument("--threads", type=int, default=0, help="0: as our engine sets them")
        s.add_argument("--rounds", type=int, default=3)
        s.add_argument("--profile", action="store_true")
    sub.choices["prefill"].add_argument("--words", type=int, default=400, help="~1.1k tokens for SmolLM2")
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
