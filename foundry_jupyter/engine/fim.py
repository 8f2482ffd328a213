"""Fill-in-the-middle: the special tokens a code model was trained with to write between a prefix and a
suffix, read from a model folder's tokenizer files.

A model has FIM when its tokenizer declares one of the known token families as added tokens; the
prompt is then prefix-suffix-middle (PSM), the order StarCoder, Qwen2.5-Coder and DeepSeek-Coder
were trained on: `<prefix token> prefix <suffix token> suffix <middle token>`, and the model writes
the middle.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FimTokens:
    prefix: str
    suffix: str
    middle: str

    def names(self) -> tuple[str, str, str]:
        return (self.prefix, self.suffix, self.middle)


# Token families by spelling, not by model name: any tokenizer that declares all three gets FIM.
FAMILIES = (
    FimTokens("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder, SantaCoder, the tiny model
    FimTokens("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder, CodeGemma-style
    FimTokens("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),  # DeepSeek-Coder
)


def find_family(added_tokens: Iterable[str]) -> FimTokens | None:
    """The first known family whose three tokens are all among `added_tokens`."""
    present = set(added_tokens)
    return next((f for f in FAMILIES if all(name in present for name in f.names())), None)


def read_fim_tokens(folder: Path) -> FimTokens | None:
    """The FIM tokens a model folder's tokenizer declares, or None. Cached per file version."""
    files = [folder / "tokenizer_config.json", folder / "tokenizer.json"]
    stamps = tuple(f.stat().st_mtime_ns if f.is_file() else 0 for f in files)
    return _read(str(folder), stamps)


@functools.lru_cache(maxsize=256)
def _read(folder: str, _stamps: tuple[int, ...]) -> FimTokens | None:
    return find_family(_added_tokens(Path(folder)))


def _added_tokens(folder: Path) -> list[str]:
    names: list[str] = []
    config = _json(folder / "tokenizer_config.json")
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        names += [t.get("content", "") for t in decoder.values() if isinstance(t, dict)]
    if find_family(names) is None:  # tokenizer_config.json may list only some: tokenizer.json has all
        added = _json(folder / "tokenizer.json").get("added_tokens")
        if isinstance(added, list):
            names += [t.get("content", "") for t in added if isinstance(t, dict)]
    return names


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
