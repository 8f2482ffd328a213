"""Show an answer while it is generated.

In a notebook one display is updated in place, at most `max_updates_per_s` times a second: the kernel's
iopub channel is rate limited and every update resends the whole text. In a terminal IPython, which
cannot update a display, the text is written to stdout as it comes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..engine.types import Delta
from .results import THINKING, ChatResult, answer_bundle, answer_text


class MarkdownStream:
    """A display updated in place with the text so far."""

    def __init__(self, max_updates_per_s: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        from IPython.display import display

        self._interval = 1.0 / max_updates_per_s if max_updates_per_s > 0 else 0.0
        self._clock = clock
        self._last = float("-inf")
        self._shown = ""
        self.updates = 0
        self._display = display
        self._handle: Any = None  # shown with the first text: a request that fails early leaves no box

    def update(self, text: str, reasoning: str = "") -> None:
        now = self._clock()
        if now - self._last < self._interval or answer_text(text, reasoning) == self._shown:
            return
        self._push(answer_bundle(text, reasoning), {})  # Markdown escaping only for what is shown
        self._last = now

    def finish(self, result: ChatResult) -> None:
        data, metadata = result.mimebundle()
        self._push(data, metadata)

    def _push(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        if self._handle is None:
            self._handle = self._display(data, raw=True, metadata=metadata, display_id=True)
        else:
            self._handle.update(data, raw=True, metadata=metadata)
            self.updates += 1
        self._shown = data.get("text/plain", "")


class TextStream:
    """Writes each new piece to stdout (for terminals)."""

    def __init__(self) -> None:
        self._written = 0
        self._thought = 0  # how much of a reasoning model's thinking is written

    def update(self, text: str, reasoning: str = "") -> None:
        if len(reasoning) > self._thought and not self._written:
            opening = "" if self._thought else f"[{THINKING}]\n"
            sys.stdout.write(opening + reasoning[self._thought :])
            self._thought = len(reasoning)
        if len(text) > self._written:
            closing = f"\n[/{THINKING}]\n" if self._thought and not self._written else ""
            sys.stdout.write(closing + text[self._written :])
            self._written = len(text)
        sys.stdout.flush()

    def finish(self, result: ChatResult) -> None:
        self.update(result.text, result.reasoning)
        sys.stdout.write(f"\n[{result.footer()}]\n")
        sys.stdout.flush()


def consume(
    deltas: Iterable[Delta],
    sink: MarkdownStream | TextStream | None,
    make_result: Callable[[str, Delta | None], ChatResult],
    on_text: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> ChatResult:
    """Drain `deltas` into `sink`; the last delta's usage and finish reason go into the result, and
    a reasoning model's thinking into `result.reasoning`."""
    text = reasoning = ""
    last: Delta | None = None
    iterator: Iterator[Delta] = iter(deltas)
    try:
        for delta in iterator:
            if cancel is not None and cancel.is_set():  # whichever backend: stop reading now
                last = Delta("", finish_reason="cancelled", usage=delta.usage)
                _close(iterator)
                break
            last = delta
            reasoning += delta.reasoning
            if delta.text or delta.reasoning:
                text += delta.text
                if sink is not None:
                    sink.update(text, reasoning)
                if on_text is not None and delta.text:
                    on_text(text)
    except KeyboardInterrupt:  # the user interrupted the kernel: keep what came, say so
        last = Delta("", finish_reason="cancelled")
        _close(iterator)
    result = make_result(text, last)
    result.reasoning = reasoning  # shown with the answer; the conversation keeps only `text`
    if sink is not None:
        sink.finish(result)
    return result


def _close(iterator: Iterator[Delta]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
