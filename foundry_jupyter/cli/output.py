"""Printing for the CLI: aligned tables for people, `--output json` for scripts, tqdm bars on stderr."""

from __future__ import annotations

import json
import sys
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


class DownloadBar:
    """A tqdm bar on stderr fed by DownloadProgress reports (silent when stderr is not a terminal)."""

    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None

    def __call__(self, progress: Any) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=progress.bytes_total or None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=self.label,
                file=sys.stderr,
                leave=True,
            )
        self._bar.set_postfix_str(progress.file or "", refresh=False)
        self._bar.n = progress.bytes_done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
