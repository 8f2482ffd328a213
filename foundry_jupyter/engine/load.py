"""What runs on a model right now, for choosing between og.Engine and og.Generator (`EngineLoad`).

A batch of one through the Engine costs the gather window plus the Engine's per-step overhead, far
more than og.Generator's first token. So a request that finds nothing running and no company within
`solo_wait()` claims the model (`claim_idle`) and runs on og.Generator in its own thread; requests sent
together, or arriving while others run, are gathered into Engine batches of up to `max_batch` (beyond
that, og.Generator again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

# How long a request finding the model idle waits for company before running alone on og.Generator:
# requests sent together (a burst) should share one Engine batch rather than start one alone. The
# wait is at most this, and at most `SOLO_WAIT_SHARE` of a lone request's time to its first token as
# measured on this model, so that waiting never adds much to a fast model's latency.
SOLO_WAIT_S = 0.003
SOLO_WAIT_SHARE = 0.1
# Requests in one Engine batch before later arrivals run on og.Generator beside it: a static batch's
# first token comes after every member's prompt, so a large batch makes all of them wait.
MAX_BATCH = 4
GATHER_S = 0.01  # small beside the time a prompt takes to process


class EngineLoad:
    """Engine jobs submitted and not yet finished, and lone og.Generator streams; thread-safe."""

    def __init__(self, *, gather_s: float, solo_wait_s: float | None, max_batch: int) -> None:
        self.gather_s = gather_s  # how long a burst stays open to arrivals
        self.solo_wait_s = solo_wait_s  # None: adaptive (see `SOLO_WAIT_SHARE`)
        self.max_batch = max_batch  # 0: no cap
        self._first_token_s: float | None = None  # a lone request's time to first token, averaged
        self._lock = threading.Lock()
        self._jobs = 0
        self._solo = 0
        self._candidate: threading.Event | None = None  # set when a would-be lone request gets company
        self._burst_until = 0.0  # until then, arrivals join the burst that ended a candidate's wait
        self._burst_members = 0

    def job_submitted(self) -> None:
        with self._lock:
            self._join_burst()
            self._jobs += 1

    def job_finished(self) -> None:
        with self._lock:
            self._jobs -= 1

    def claim_idle(self) -> IdleClaim | None:
        """If nothing runs on this model and nothing else arrives within `solo_wait()`, a claim that
        counts the caller's og.Generator stream as load (so later arrivals batch on the Engine).
        None while anything else runs or arrives: the caller goes to the Engine."""
        with self._lock:
            burst = self._candidate is not None or time.monotonic() < self._burst_until
            if burst or self._jobs or self._solo:
                self._join_burst()
                engine_jobs = max(self._jobs, self._burst_members) if burst else self._jobs
                if not (self.max_batch and engine_jobs >= self.max_batch):
                    self._burst_members += burst
                    return None
                self._solo += 1  # the Engine has a full batch: og.Generator beside it
                return IdleClaim(self)
            self._solo += 1
            wait = self.solo_wait()
            if wait <= 0:
                return IdleClaim(self)
            candidate = self._candidate = threading.Event()
        candidate.wait(wait)
        with self._lock:
            if candidate.is_set():  # company came: the whole burst goes to one Engine batch
                return None
            self._candidate = None
        return IdleClaim(self)

    def solo_wait(self) -> float:
        """Seconds a request finding the model idle waits for company."""
        if self.solo_wait_s is not None:
            return self.solo_wait_s
        if self._first_token_s is None:
            return SOLO_WAIT_S
        return min(SOLO_WAIT_S, SOLO_WAIT_SHARE * self._first_token_s)

    def observe_first_token(self, seconds: float) -> None:
        """A lone og.Generator request's time from its claim to its first token."""
        previous = self._first_token_s
        self._first_token_s = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def release_solo(self) -> None:
        with self._lock:
            self._solo -= 1

    def _join_burst(self) -> None:
        """(With the lock) an arrival ends a waiting candidate's claim: both go to the Engine."""
        if self._candidate is not None:
            self._candidate.set()
            self._candidate = None
            self._solo -= 1
            self._burst_until = time.monotonic() + self.gather_s
            self._burst_members = 1


class IdleClaim:
    """A lone og.Generator stream counted as load until it ends (or is closed or dropped unstarted)."""

    def __init__(self, load: EngineLoad) -> None:
        self._load: EngineLoad | None = load
        self.started = time.monotonic()

    def release(self) -> None:
        load, self._load = self._load, None
        if load is not None:
            load.release_solo()

    def first_token(self) -> None:
        if self._load is not None:
            self._load.observe_first_token(time.monotonic() - self.started)

    def track(self, inner: Iterator[Any]) -> Iterator[Any]:
        """`inner` (a generator), releasing this claim when it ends, fails or is closed."""
        return _Tracked(inner, self)


class _Tracked(Iterator[Any]):
    # A class, not a generator function: closing a generator that never started runs no `finally`.
    def __init__(self, inner: Iterator[Any], claim: IdleClaim) -> None:
        self._inner = inner
        self._claim = claim
        self._first = True

    def __next__(self) -> Any:
        try:
            item = next(self._inner)
        except BaseException:
            self._claim.release()
            raise
        if self._first:
            self._first = False
            self._claim.first_token()
        return item

    def close(self) -> None:
        try:
            self._inner.close()  # type: ignore[attr-defined]
        finally:
            self._claim.release()

    def __del__(self) -> None:
        self._claim.release()
