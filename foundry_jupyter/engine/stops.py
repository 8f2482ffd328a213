"""Stop strings on streamed text: cut before the first match, and never stream a possible match's start."""

from __future__ import annotations


class StopFilter:
    """Feed text pieces in; get back the text that is safe to emit.

    Text that could be the beginning of a stop string is held back until the next piece shows it is
    not, so a client never sees part of a stop string that is then cut.
    """

    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Text safe to emit after `piece`; sets `stopped` when a stop string appeared."""
        if self.stopped:
            return ""
        if not self._stops:
            return piece
        self._pending += piece
        cut = min((i for i in (self._pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        keep = self._partial_suffix(self._pending)
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return out

    def flush(self) -> str:
        """The held-back text, at the end of a generation that did not stop on a stop string."""
        out, self._pending = self._pending, ""
        return "" if self.stopped else out

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
