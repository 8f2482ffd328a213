"""Printing for the CLI: aligned tables for people, `--output json` for scripts (bars: `progress`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def wants_json(args: Any) -> bool:
    return getattr(args, "output", "table") == "json"


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    print("\n".join(line.rstrip() for line in lines))
