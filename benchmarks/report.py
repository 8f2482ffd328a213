"""results.json -> results.md (tables, ratios, goals) and results.png (matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

NAMES = {
    "ours": "foundry-jupyter REST",
    "peer": "Foundry Local (peer)",
    "raw og": "raw og loop",
    "llama.cpp": "llama.cpp (node-llama-cpp)",
}
LLAMA = "llama.cpp"


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def goals(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) for each goal of the issue that this run has the data for."""
    loads, turns, out = results["loads"], results["turns"], []

    def load(model: str, system: str, clients: int) -> dict[str, Any] | None:
        return _find(loads, model=model, system=system, clients=clients)

    def check(goal: str, value: float, ok: bool, text: str) -> None:
        if not math.isnan(value):
            out.append((goal, text, "met" if ok else "**missed**"))

    ours1, peer1 = load("tiny", "ours", 1), load("tiny", "peer", 1)
    if ours1 and peer1:
        r = _ratio(ours1["e2e_tps"], peer1["e2e_tps"])
        check("tiny, 1 client: tokens/s ≥ peer", r, r >= 1, f"{r:.2f}x")
        t = _ratio(ours1["ttft_p50_ms"], peer1["ttft_p50_ms"])
        check("tiny, 1 client: TTFT ≤ peer", t, t <= 1, f"{t:.2f}x the peer's TTFT p50")
    for model, need in (("tiny", 1.3), ("smollm2-fp32", 1.6)):
        ours, peer = load(model, "ours", 4), load(model, "peer", 4)
        if ours and peer:
            r = _ratio(ours["e2e_tps"], peer["e2e_tps"])
            check(f"{model}, 4 clients: aggregate ≥ {need}x peer", r, r >= need, f"{r:.2f}x")
    for model in ("smollm2-fp32", "smollm2-int4"):
        ours, peer, raw = load(model, "ours", 1), load(model, "peer", 1), load(model, "raw og", 1)
        if ours and raw:
            r = _ratio(ours["decode_tps"], raw["decode_tps"])
            check(f"{model}: decode ≥ 0.97x raw og", r, r >= 0.97, f"{r:.2f}x")
        if ours and peer:
            r = _ratio(ours["decode_tps"], peer["decode_tps"])
            check(f"{model}: decode ≥ peer", r, r >= 1, f"{r:.2f}x")
    for row in turns:
        if row["system"] == "ours":
            r = row["ratio"]
            check(f"{row['model']}: second-turn TTFT ≤ 0.15x cold", r, r <= 0.15, f"{r:.2f}x")
    for model, st in results.get("status", {}).items():
        p99 = st["p99_ms"]
        check(f"{model}: /api/status p99 < 50 ms during 4 streams", p99, p99 < 50, f"{p99:.1f} ms")
    imp = results["notes"].get("import", {}).get("import_ms_median", math.nan)
    check("import foundry_jupyter < 100 ms", imp, imp < 100, f"{imp:.1f} ms")
    for model, figure, ours, theirs in llama_rows(results):
        if figure.startswith(("decode tok/s, 1 stream", "aggregate", "prompt tok/s, ~1")):
            r = _ratio(ours, theirs)
            check(f"{model}, {figure}: ≥ 1.0x llama.cpp", r, r >= 1, f"{r:.2f}x")
    return out


def llama_rows(results: dict[str, Any]) -> list[tuple[str, str, float, float]]:
    """(model, figure, ours, llama.cpp) for every model llama.cpp ran on."""
    out = []
    loads, staggered = results["loads"], results.get("staggered", [])
    prompts = results.get("prompts", [])
    for model in dict.fromkeys(r["model"] for r in loads if r["system"] == LLAMA):

        def pair(
            rows: list[dict[str, Any]], key: str, model: str = model, **match: Any
        ) -> tuple[float, float]:
            ours, theirs = (_find(rows, model=model, system=s, **match) for s in ("ours", LLAMA))
            return (ours or {}).get(key, math.nan), (theirs or {}).get(key, math.nan)

        for clients in sorted({r["clients"] for r in loads if r["model"] == model}):
            if clients == 1:
                out.append((model, "decode tok/s, 1 stream", *pair(loads, "decode_tps", clients=1)))
            else:
                figure = f"aggregate tok/s, {clients} streams in lockstep"
                out.append((model, figure, *pair(loads, "e2e_tps", clients=clients)))
        for row in staggered:
            if row["model"] == model and row["system"] == "ours":
                figure = f"aggregate tok/s, {row['clients']} streams staggered over {row['stagger_s']:g} s"
                out.append((model, figure, *pair(staggered, "e2e_tps", clients=row["clients"])))
        for row in prompts:
            if row["model"] == model and row["system"] == "ours":
                tokens = row["prompt_tokens"]
                out.append(
                    (
                        model,
                        f"prompt tok/s, ~{tokens:,.0f} tokens",
                        *pair(prompts, "prompt_tps", words=row["words"]),
                    )
                )
                figure = f"decode tok/s after ~{tokens:,.0f} tokens"
                out.append((model, figure, *pair(prompts, "decode_tps", words=row["words"])))
    return out


def markdown(results: dict[str, Any]) -> str:
    notes = results["notes"]
    lines = [
        "## Streaming chat, 128 tokens, greedy"
        if results["config"].get("max_tokens") == "128"
        else f"## Streaming chat, {results['config'].get('max_tokens')} tokens, greedy",
        "",
    ]
    lines += [
        "| model | clients | system | TTFT p50 ms | TTFT p90 ms | decode tok/s (per stream) | "
        "end-to-end tok/s (all streams) | ours / peer | ours / raw | ours / llama.cpp | requests | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    loads = results["loads"]
    for row in loads:
        ours = _find(loads, model=row["model"], clients=row["clients"], system="ours")
        vs_peer = vs_raw = vs_llama = ""
        if row["system"] == "ours":
            peer = _find(loads, model=row["model"], clients=row["clients"], system="peer")
            raw = _find(loads, model=row["model"], clients=row["clients"], system="raw og")
            llama = _find(loads, model=row["model"], clients=row["clients"], system=LLAMA)
            vs_peer = _f(_ratio(ours["e2e_tps"], peer["e2e_tps"]), 2) + "x" if peer else "–"
            vs_raw = _f(_ratio(ours["e2e_tps"], raw["e2e_tps"]), 2) + "x" if raw else "–"
            vs_llama = _f(_ratio(ours["e2e_tps"], llama["e2e_tps"]), 2) + "x" if llama else "–"
        lines.append(
            f"| {row['model']} | {row['clients']} | {NAMES.get(row['system'], row['system'])} | "
            f"{_f(row['ttft_p50_ms'])} | {_f(row['ttft_p90_ms'])} | {_f(row['decode_tps'])} | "
            f"{_f(row['e2e_tps'])} | {vs_peer} | {vs_raw} | {vs_llama} | {row['requests']} | "
            f"{row['errors']} |"
        )
    if results.get("staggered"):
        lines += [
            "",
            "## Clients arriving at random offsets (staggered), 128 tokens, greedy",
            "",
            "| model | clients | offsets s | system | TTFT p50 ms | decode tok/s (per stream) | "
            "end-to-end tok/s (all streams) | requests | errors |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for row in results["staggered"]:
            lines.append(
                f"| {row['model']} | {row['clients']} | 0–{row['stagger_s']:g} | "
                f"{NAMES.get(row['system'], row['system'])} | {_f(row['ttft_p50_ms'])} | "
                f"{_f(row['decode_tps'])} | {_f(row['e2e_tps'])} | {row['requests']} | {row['errors']} |"
            )
    if results.get("prompts"):
        lines += [
            "",
            "## Long prompts, one at a time",
            "",
            "| model | system | prompt tokens | TTFT p50 ms | prompt tok/s | decode tok/s after it | "
            "requests |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in results["prompts"]:
            lines.append(
                f"| {row['model']} | {NAMES.get(row['system'], row['system'])} | "
                f"{_f(row['prompt_tokens'], 0)} | "
                f"{_f(row['ttft_p50_ms'])} | {_f(row['prompt_tps'], 0)} | {_f(row['decode_tps'])} | "
                f"{row['requests']} |"
            )
    rows = llama_rows(results)
    if rows:
        lines += [
            "",
            "## foundry-jupyter against llama.cpp, same GGUF",
            "",
            "| model | figure | ours | llama.cpp | ours / llama.cpp |",
            "|---|---|---:|---:|---:|",
        ]
        for model, figure, ours_v, theirs in rows:
            ratio = _f(_ratio(ours_v, theirs), 2)
            ratio += "x" if ratio != "–" else ""
            lines.append(f"| {model} | {figure} | {_f(ours_v)} | {_f(theirs)} | {ratio} |")
    lines += [
        "",
        "## Second turn of a chat (whole history resent) against a cold prompt of the same length",
        "",
        "| model | system | prompt tokens (2nd turn / cold) | cached tokens | 2nd-turn TTFT p50 ms | "
        "cold TTFT p50 ms | ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["turns"]:
        lines.append(
            f"| {row['model']} | {NAMES.get(row['system'], row['system'])} | {row['prompt_tokens']} / "
            f"{row['cold_prompt_tokens']} | {row['cached_tokens']} | {_f(row['second_turn_ttft_p50_ms'])} | "
            f"{_f(row['cold_ttft_p50_ms'])} | {_f(row['ratio'], 2)} |"
        )
    lines += ["", "## Jupyter server", ""]
    for model, st in results.get("status", {}).items():
        lines.append(
            f"- `GET /api/status` while 4 streams run ({model}): p50 {_f(st['p50_ms'])} ms, "
            f"p99 {_f(st['p99_ms'])} ms, max {_f(st['max_ms'])} ms over {st['samples']} requests"
        )
    imp = notes.get("import", {})
    if imp:
        lines.append(
            f"- `import foundry_jupyter`: {_f(imp['import_ms_median'])} ms median "
            f"(min {_f(imp['import_ms_min'])} ms), timed inside a fresh interpreter"
        )
    st = notes.get("startup")
    if st:
        lines.append(
            f"- server start-up until `/api/status` answers: {_f(st['with_extension_s'], 2)} s with the "
            f"extension, {_f(st['without_extension_s'], 2)} s without: the extension adds "
            f"{_f(st['added_s'], 2)} s (medians)"
        )
    for model, seconds in notes.get("ours_load_s", {}).items():
        lines.append(f"- loading {model} into a runner (`GET foundry/openai/load`): {_f(seconds, 2)} s")
    lines += ["", "## Peak resident memory", "", "| process | peak RSS MB |", "|---|---:|"]
    lines += [f"| {label} | {_f(mb)} |" for label, mb in results.get("memory_mb", {}).items()]
    lines += ["", "## Goals", "", "| goal | measured | |", "|---|---|---|"]
    lines += [f"| {g} | {m} | {v} |" for g, m, v in goals(results)]
    m = notes.get("machine", {})
    lines += [
        "",
        f"Machine: {m.get('cpus')} CPUs, {m.get('memory_gb')} GB, {m.get('platform')}, Python "
        f"{m.get('python')}. Peer: foundry-local-sdk {notes.get('peer_version', '–')}.",
    ]
    if "llamacpp" in notes:
        ll = notes["llamacpp"]
        lines.append(
            f"llama.cpp: {ll.get('package')} ({ll.get('llama')} binaries), {ll.get('threads')} threads."
        )
    if "loadavg_start" in notes:
        start, end = notes["loadavg_start"][0], notes.get("loadavg_end", [math.nan])[0]
        lines.append(
            f"Load average (1 min): {_f(start, 2)} at the start, {_f(end, 2)} at the end; other work on the "
            "machine slows every system, evened out only as far as the rotating order allows."
        )
    for system, reason in notes.get("skipped", {}).items():
        reasons = reason if isinstance(reason, list) else [reason]
        lines += [f"Skipped {system}: {r}." for r in reasons]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = results["loads"]
    models = list(dict.fromkeys(r["model"] for r in loads))
    systems = list(dict.fromkeys(r["system"] for r in loads))
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 6.5), squeeze=False)
    for col, model in enumerate(models):
        clients = sorted({r["clients"] for r in loads if r["model"] == model})
        width = 0.8 / max(1, len(systems))
        for i, system in enumerate(systems):
            rows = [_find(loads, model=model, system=system, clients=c) for c in clients]
            xs = [c_i + i * width for c_i in range(len(clients))]
            tps = [r["e2e_tps"] if r else 0 for r in rows]
            ttft = [r["ttft_p50_ms"] if r else 0 for r in rows]
            axes[0][col].bar(xs, tps, width, label=NAMES.get(system, system))
            axes[1][col].bar(xs, ttft, width, label=NAMES.get(system, system))
        for row, ylabel in ((0, "end-to-end tokens/s (all streams)"), (1, "time to first token p50 (ms)")):
            ax = axes[row][col]
            ax.set_xticks([c_i + width * (len(systems) - 1) / 2 for c_i in range(len(clients))])
            ax.set_xticklabels([f"{c} client{'s' if c > 1 else ''}" for c in clients])
            ax.set_ylabel(ylabel)
            ax.set_title(model)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path) -> bool:
    """Writes results.md, and results.png when matplotlib (benchmarks/requirements.txt) is installed."""
    (out / "results.md").write_text(markdown(results))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    plot(results, out / "results.png")
    return True
