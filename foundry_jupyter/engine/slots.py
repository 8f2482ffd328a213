"""Continuous batching on our own KV rows (`SlotScheduler`), for graphs `slot_model` can run.

One owner thread drives a `SlotModel`. Sequences that are generating occupy rows 0..n-1 and advance
together, one token each per decode step; a new arrival is read into row n alone, in chunks of at most
`chunk` tokens with a decode step of the others between two chunks, so running streams are never
frozen for a whole long prompt, and then joins the decode steps. When a sequence ends, the last row's
cache moves into its place, so the rows stay compact.

Conversations: a finished sequence's token ids and a copy of their keys and values are kept (LRU,
`max_held`); a new job that shares a prefix with one of them starts from a copy of it and reads only
the rest of its prompt. A cancelled sequence is kept the same way.

The interface is `EngineScheduler`'s (`Job`, `submit`, `alive`, events "token" / "done" / "error"),
so `EnginePath` drives either. Jobs with a grammar are not taken (`accepts`): og.Generator runs them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from foundry_jupyter.engine.lifetime import close_at_exit
from foundry_jupyter.engine.load import IdleClaim
from foundry_jupyter.engine.params import Generation
from foundry_jupyter.engine.scheduler import Job, OwnerThread
from foundry_jupyter.engine.slot_model import HeldCache, SlotGraph, SlotModel, sample
from foundry_jupyter.engine.stream import SLOTS

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 0.5  # how often an idle owner thread wakes (it also wakes for every job)
ROWS = 8  # sequences generating at once; later arrivals wait for a row
CHUNK = 256  # prompt tokens read in one run
MIN_READ = 2  # prompt tokens read even when a held conversation has them (`HeldCaches.best`)


@dataclass(eq=False)
class _Sequence:
    job: Job
    rng: np.random.Generator | None
    known: list[int] = field(default_factory=list)  # ids whose keys and values are in the row
    next_token: int = -1  # sampled, not yet read
    generated: int = 0


class HeldCaches:
    """Finished sequences' caches, LRU; read by callers' threads, changed by the owner thread."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._held: OrderedDict[int, HeldCache] = OrderedDict()
        self._next_key = 0

    def __len__(self) -> int:
        return len(self._held)

    def best(self, ids: list[int]) -> tuple[HeldCache, int] | None:
        """The held cache sharing the longest prefix with `ids`, and how much of it to reuse: at most
        `len(ids) - 2` tokens. A one-token read takes GQA's decode path, whose float rounding differs a
        little from a prompt's; int8-activation weights can turn that into another first token, so a
        continuation reads at least two and answers as a cold run does."""
        with self._lock:
            best, best_len, best_key = None, 0, None
            for key, held in self._held.items():
                n = _common_prefix(held.ids, ids, len(ids) - MIN_READ)
                if n > best_len:
                    best, best_len, best_key = held, n, key
            if best is not None:
                self._held.move_to_end(best_key)
                return best, best_len
        return None

    def put(self, held: HeldCache) -> None:
        if self._capacity <= 0 or not held.ids:
            return
        with self._lock:
            # A held cache that the new one extends is no longer needed.
            for key in [k for k, h in self._held.items() if h.ids == held.ids[: len(h.ids)]]:
                del self._held[key]
            self._held[self._next_key] = held
            self._next_key += 1
            while len(self._held) > self._capacity:
                self._held.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    if a[:n] == b[:n]:
        return n
    differs = np.nonzero(np.asarray(a[:n]) != np.asarray(b[:n]))[0]
    return int(differs[0])


class SlotScheduler(OwnerThread):
    backend = SLOTS
    static = False  # later arrivals join the running batch
    batch_running = False
    peak_rows = 0  # the most sequences that generated together

    def __init__(
        self,
        graph: SlotGraph,
        *,
        eos: frozenset[int],
        max_length: int,
        threads: int | None,
        max_held: int = 4,
        rows: int = ROWS,
        chunk: int = CHUNK,
        capacity: int = 256,
        name: str = "foundry-slots",
    ) -> None:
        self._eos = eos
        self._chunk = chunk
        self.held = HeldCaches(max_held)
        self._inbox: queue.Queue[Job | None] = queue.Queue()
        self._closed = False
        self.broken: str | None = None
        # Built here, not in the thread: a graph onnxruntime refuses fails the constructor.
        self._model = SlotModel(graph, rows=rows, max_length=max_length, threads=threads, capacity=capacity)
        self._waiting: deque[Job] = deque()
        self._active: list[_Sequence] = []  # rows 0..n-1, generating
        self._reading: _Sequence | None = None  # row n, its prompt being read
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        close_at_exit(self)
        self._thread.start()

    # ---- caller side -------------------------------------------------------------------------
    def accepts(self, gen: Generation) -> bool:
        return gen.guidance is None

    def submit(self, job: Job) -> None:
        if self._closed or self.broken:
            raise RuntimeError(self.broken or "the engine is closed")
        self._inbox.put(job)

    def claim_idle(self) -> IdleClaim | None:
        """Never: a lone request runs here too, so that later arrivals can join it."""
        return None

    def holds_prefix_of(self, ids: list[int], needed: int) -> bool:
        """Whether a held conversation spares at least half of `ids` (a hint: it may be gone by then)."""
        found = self.held.best(ids)
        return found is not None and 2 * found[1] >= len(ids)

    # ---- owner thread ------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            while self._receive():
                try:
                    self._send_cancels()
                    self._admit()
                    if self._reading is not None:
                        self._read_chunk()
                    if self._active:
                        self._decode()
                except Exception as exc:
                    log.exception("the generation engine failed")
                    self.broken = f"the generation engine failed: {exc}"
                    return
                self.batch_running = bool(self._active)
                self.peak_rows = max(self.peak_rows, len(self._active))
        finally:
            self._shutdown()

    def _receive(self) -> bool:
        """Take new jobs (waiting for one when idle); False once closed."""
        busy = self._active or self._reading is not None or self._waiting
        if not busy:
            self._model.shrink()  # what a long prompt grew is given back until the next one
        try:
            job = self._inbox.get(timeout=_IDLE_WAIT_S) if not busy else self._inbox.get_nowait()
        except queue.Empty:
            return True
        while True:
            if job is None:
                return False
            self._waiting.append(job)
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _admit(self) -> None:
        """Start reading the next waiting job's prompt when no other is being read and a row is free."""
        while self._reading is None and self._waiting and len(self._active) < self._model.rows:
            job = self._waiting.popleft()
            try:
                if job.cancel.is_set():
                    job.events.put(("done", "CANCELLED"))
                    continue
                rng = None
                if job.sampling.do_sample:
                    rng = np.random.default_rng(job.sampling.seed)
                seq = _Sequence(job, rng)
                found = self.held.best(job.ids)
                if found is not None:
                    held, reused = found
                    self._model.restore(held, len(self._active), reused, self._used())
                    seq.known = job.ids[:reused]
                    job.cached = reused
                self._reading = seq
            except Exception as exc:
                job.start_error = exc
                job.events.put(("error", exc))
            finally:
                job.started.set()

    def _read_chunk(self) -> None:
        seq = self._reading
        assert seq is not None
        job = seq.job
        if job.cancel.is_set():
            self._reading = None
            self._finish(seq, len(self._active), "CANCELLED")
            return
        row = len(self._active)
        start = len(seq.known)
        part = job.ids[start : start + self._chunk]
        last = start + len(part) == len(job.ids)
        logits = self._model.prefill(row, part, start, last, self._used())
        seq.known.extend(part)
        if last:
            self._reading = None
            self._active.append(seq)
            assert logits is not None
            self._next(seq, logits)

    def _used(self) -> list[int]:
        """The positions each row holds, row by row (the row being read last)."""
        used = [len(seq.known) for seq in self._active]
        return [*used, len(self._reading.known)] if self._reading is not None else used

    def _decode(self) -> None:
        tokens = [seq.next_token for seq in self._active]
        lengths = [len(seq.known) for seq in self._active]
        logits = self._model.decode(tokens, lengths, self._used())
        for seq, token in zip(self._active, tokens, strict=True):
            seq.known.append(token)
        for seq, row_logits in zip(list(self._active), logits, strict=True):
            self._next(seq, row_logits)

    def _next(self, seq: _Sequence, logits: np.ndarray) -> None:
        """Pick `seq`'s next token from `logits`: stream it, or end the sequence."""
        token = sample(logits, seq.job.sampling, seq.rng)
        if token in self._eos:
            self._end(seq, "EOS")
            return
        seq.next_token = token
        seq.generated += 1
        seq.job.events.put(("token", token))
        if seq.generated >= seq.job.max_new:
            self._end(seq, "MAX_GENERATED_TOKENS")

    def _send_cancels(self) -> None:
        for seq in [s for s in self._active if s.job.cancel.is_set()]:
            self._end(seq, "CANCELLED")

    def _end(self, seq: _Sequence, reason: str) -> None:
        """End an active sequence: hold its cache, free its row, keep the rows compact."""
        row = self._active.index(seq)
        self._finish(seq, row, reason)
        last = len(self._active) - 1
        if row != last:
            moved = self._active[last]
            self._model.move(last, row, len(moved.known))
            self._active[row] = moved
        self._active.pop()
        if self._reading is not None:  # it sat just after the active rows
            self._model.move(last + 1, last, len(self._reading.known))

    def _finish(self, seq: _Sequence, row: int, reason: str) -> None:
        if seq.known:
            self.held.put(self._model.save(row, seq.known))
        seq.job.events.put(("done", reason))

    def _shutdown(self) -> None:
        closed = RuntimeError(self.broken or "the model was closed")
        jobs = [s.job for s in self._active] + list(self._waiting)
        if self._reading is not None:
            jobs.append(self._reading.job)
        jobs += self._queued_jobs()
        for job in jobs:
            job.events.put(("error", closed))
            job.started.set()
        self._active.clear()
        self._waiting.clear()
        self._reading = None
        self.held.clear()
