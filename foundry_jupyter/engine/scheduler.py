"""One thread that owns an `og.Engine`: requests from many threads, batched together, each cancellable.

og 0.18's Engine must be driven by a single owner thread (it checks). Callers hand a `Job` to
`EngineScheduler.submit` and read tokens from the job's queue; the owner thread creates og requests,
runs engine steps, routes token and finish events back, and cancels turns whose `cancel` is set.

Conversations: a finished og request still holds its KV cache. The scheduler keeps the last few
(LRU, `max_held`, see `HeldRequests`) with their token ids (prompt + generated). A new job whose ids
extend one of them continues that request with a new turn on just the new tokens instead of
recomputing the history.

Batching in 0.18: for a model without a paged KV cache (plain past/present tensors, as the model
builder writes for CPU) the Engine batches statically: requests queued together run as one batch,
and a request that arrives while a batch runs waits for that batch to finish (`ChatModel` sends such
late arrivals to og.Generator instead). A static batch can continue a request only when it was alone
in its batch, and starting a new batch releases every earlier request's cache; so in static mode the
scheduler holds only the conversation of a one-request batch, until the next batch starts. A job
that cannot continue a held conversation runs as a fresh request (same text, no reuse).

Which requests come here at all, rather than to og.Generator, is counted in `load`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from foundry_jupyter.engine.lifetime import close_at_exit
from foundry_jupyter.engine.load import GATHER_S, MAX_BATCH, EngineLoad, IdleClaim
from foundry_jupyter.engine.params import Generation, Sampling
from foundry_jupyter.engine.stream import ENGINE

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 0.5  # how often an idle owner thread wakes (it also wakes for every job)


@dataclass(eq=False)
class Job:
    """One generation turn.

    `events` receives ("token", id) items, then ("done", og finish reason name) or ("error", exc).
    """

    ids: list[int]
    max_new: int
    sampling: Sampling
    guidance: tuple[str, str] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    events: queue.Queue[tuple[Any, ...]] = field(default_factory=queue.Queue)
    cached: int = 0  # prompt tokens served from a held conversation
    # Cap on the og request's prompt + generated tokens over all its turns (0: the model's max_length).
    # A model that preallocates its KV cache (past_present_share_buffer) allocates this much.
    session_tokens: int = 0
    started: threading.Event = field(default_factory=threading.Event)  # set once begin_turn ran
    start_error: BaseException | None = None  # what begin_turn raised (a bad grammar, say)
    # Owned by the scheduler thread.
    _request: Any = None
    _turn: int = 0
    _tokens: list[int] = field(default_factory=list)
    _cancel_sent: bool = False
    _cap: int = 0


class HeldRequests:
    """Finished og requests kept for a follow-up turn, LRU: request, its token ids, its session cap."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._held: OrderedDict[int, tuple[Any, list[int], int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def continues(self, ids: list[int], needed: int) -> bool:
        """Whether a held request could continue into `ids` (a hint: it may be gone by then)."""
        with self._lock:
            return self._match(ids, needed) is not None

    def take(self, ids: list[int], needed: int) -> tuple[Any, list[int], int] | None:
        with self._lock:
            key = self._match(ids, needed)
            return self._held.pop(key) if key is not None else None

    def _match(self, ids: list[int], needed: int) -> int | None:
        """The held request whose ids are the longest proper prefix of `ids`, with room for `needed`."""
        best, best_len = None, 0
        for key, (_, held_ids, cap) in self._held.items():
            n = len(held_ids)
            if best_len < n < len(ids) and (not cap or cap >= needed) and ids[:n] == held_ids:
                best, best_len = key, n
        return best

    def put(self, request: Any, ids: list[int], cap: int) -> None:
        with self._lock:
            self._held[id(request)] = (request, ids, cap)
            evicted = []
            while len(self._held) > self._capacity:
                evicted.append(self._held.popitem(last=False)[1][0])
        for old in evicted:
            old.close()

    def release_all(self) -> None:
        with self._lock:
            released = [entry[0] for entry in self._held.values()]
            self._held.clear()
        for request in released:
            request.close()


class OwnerThread:
    """What both schedulers share: one owner thread (`_thread`) takes jobs from `_inbox` until it
    reads None; callers ask whether it is `alive` and how many conversations it holds."""

    _thread: threading.Thread
    _inbox: queue.Queue[Any]
    _closed: bool
    broken: str | None  # why the scheduler stopped working, if it did
    held: Any  # a sized collection of held conversations

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.broken

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    @property
    def held_conversations(self) -> int:
        return len(self.held)

    def _queued_jobs(self) -> list[Any]:
        """The jobs still in the inbox (on shutdown: they will never start)."""
        jobs = []
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return jobs
            if job is not None:
                jobs.append(job)


class EngineScheduler(OwnerThread):
    backend = ENGINE

    def __init__(
        self,
        og_model: Any,
        *,
        max_held: int = 4,
        static: bool = True,
        gather_s: float = GATHER_S,
        solo_wait_s: float | None = None,
        max_batch: int = MAX_BATCH,
        name: str = "foundry-engine",
    ) -> None:
        self._model = og_model
        self.load = EngineLoad(gather_s=gather_s, solo_wait_s=solo_wait_s, max_batch=max_batch)
        self.held = HeldRequests(max_held)
        self.static = static
        self.batch_running = False  # a batch has started generating (static mode: late arrivals wait)
        self._batch_size = 0  # requests in the current static batch
        self._inbox: queue.Queue[Job | None] = queue.Queue()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._closed = False
        self.broken: str | None = None  # why the Engine stopped working, if it did
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        close_at_exit(self)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    # ---- caller side -------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if self._closed or self.broken:
            raise RuntimeError(self.broken or "the engine is closed")
        self.load.job_submitted()
        self._inbox.put(job)

    def accepts(self, gen: Generation) -> bool:
        """Whether the Engine can run `gen` at all: og 0.18's static-batching Engine has no per-request
        seed."""
        return not (gen.sampling.do_sample and gen.sampling.seed is not None)

    def claim_idle(self) -> IdleClaim | None:
        """See `EngineLoad.claim_idle`."""
        return self.load.claim_idle()

    def _finish(self, job: Job, event: tuple[Any, ...]) -> None:
        """Tell `job`'s caller its last event; the job no longer counts as load."""
        self.load.job_finished()
        job.events.put(event)

    def holds_prefix_of(self, ids: list[int], needed: int) -> bool:
        """Whether a held conversation could continue into `ids` (a hint: it may be gone by then)."""
        return self.held.continues(ids, needed)

    # ---- owner thread ------------------------------------------------------------------------
    def _main(self) -> None:
        import onnxruntime_genai as og

        try:
            self._og = og
            self._engine = og.Engine(self._model)
            self._buffer = self._engine.create_event_buffer(64)
        except BaseException as exc:  # reported to the constructor's caller
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        self._active: dict[int, Job] = {}
        try:
            self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> None:
        while True:
            busy = bool(self._active)
            try:
                first = self._inbox.get(timeout=_IDLE_WAIT_S) if not busy else self._inbox.get_nowait()
            except queue.Empty:
                first = ...
            if first is None:
                return
            incoming = [] if first is ... else [first]
            # A static batch cannot be joined once it runs: when a request wakes an idle engine, give
            # requests sent at the same moment a few milliseconds to arrive and share its batch.
            # (A continuation runs alone in a static batch anyway: no wait for it.)
            gather = incoming and not busy and self.static and not self._continues(incoming[0])
            gather_until = time.monotonic() + (self.load.gather_s if gather else 0)
            while True:
                try:
                    wait = gather_until - time.monotonic()
                    more = self._inbox.get(timeout=wait) if wait > 0 else self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._start_all(incoming)
                    return
                incoming.append(more)
            self._start_all(incoming)
            try:
                self._send_cancels()
                if self._active and self._engine.has_pending_requests():
                    self._step()
            except Exception as exc:  # og marks itself unhealthy after such failures: stop using it
                log.exception("the generation engine failed")
                self.broken = f"the generation engine failed: {exc}"
                return

    def _start_all(self, jobs: list[Job]) -> None:
        # Continuations first: a fresh request admitted before them would release their caches.
        jobs.sort(key=lambda j: not self._continues(j))
        for job in jobs:
            try:
                if job.cancel.is_set():
                    self._finish(job, ("done", "CANCELLED"))
                    continue
                self._start(job)
            except Exception as exc:
                job.start_error = exc
                self._finish(job, ("error", exc))
            finally:
                job.started.set()

    def _continues(self, job: Job) -> bool:
        return self.held.continues(job.ids, len(job.ids) + job.max_new)

    def _options(self, request: Any, job: Job) -> Any:
        og = self._og
        options = og.TurnOptions(request)
        options.set_max_generated_tokens(job.max_new)
        options.set_do_sample(job.sampling.do_sample)
        if job.sampling.do_sample:
            if job.sampling.temperature is not None:
                options.set_temperature(job.sampling.temperature)
            if job.sampling.top_p is not None:
                options.set_top_p(job.sampling.top_p)
            if job.sampling.top_k is not None:
                options.set_top_k(job.sampling.top_k)
        if job.guidance is not None:
            options.set_guidance(*job.guidance)
        return options

    def _start(self, job: Job) -> None:
        import numpy as np

        request, held_ids, cap = self.held.take(job.ids, len(job.ids) + job.max_new) or (None, [], 0)
        if request is not None:
            try:
                job._turn = request.begin_turn(
                    np.asarray(job.ids[len(held_ids) :], dtype=np.int32), self._options(request, job)
                )
                job._request, job.cached = request, len(held_ids)
            except RuntimeError as exc:  # its cache went with a later batch: start afresh
                log.debug("held conversation not continued: %s", exc)
                request.close()
        if job._request is None:
            if self.static:
                if not self._active:
                    # The batch this request starts releases every finished request's cache.
                    self.held.release_all()
                    self._batch_size = 0
                self._batch_size += 1  # counts queued requests too: it may only overestimate
            options = None
            if job.session_tokens:
                options = self._og.RequestOptions()
                options.set_max_session_tokens(job.session_tokens)
            request = self._engine.create_request(options=options)
            cap = job.session_tokens
            try:
                job._turn = request.begin_turn(
                    np.asarray(job.ids, dtype=np.int32), self._options(request, job)
                )
            except BaseException:
                request.close()
                raise
            job._request = request
        job._cap = cap
        self._active[id(job._request)] = job

    def _send_cancels(self) -> None:
        for job in self._active.values():
            if job.cancel.is_set() and not job._cancel_sent:
                job._cancel_sent = True
                job._request.cancel_turn(job._turn)

    def _step(self) -> None:
        og = self._og
        flags = og.EngineEventFlags
        finished: list[tuple[Job, str]] = []
        for event in self._engine.run(self._buffer):
            job = self._active.get(id(event.request))
            if job is None:
                continue
            if event.flags & flags.FAILED:
                self._active.pop(id(job._request), None)
                job._request.close()
                self._finish(job, ("error", RuntimeError(f"generation failed ({event.error_code.name})")))
                continue
            if event.flags & flags.TOKEN:
                self.batch_running = True
                token = int(event.token)
                job._tokens.append(token)
                job.events.put(("token", token))
            if event.flags & flags.TURN_FINISHED:
                self._active.pop(id(job._request), None)
                if self.static and self._batch_size > 1:
                    # A static batch continues only a request that was alone in it (og 0.18).
                    job._request.close()
                else:
                    self.held.put(job._request, job.ids + job._tokens, job._cap)
                finished.append((job, event.finish_reason.name))
        if not self._active:
            self.batch_running = False
        # Told last, so a caller that reacts to its answer sees the engine's state after this step.
        for job, reason in finished:
            self._finish(job, ("done", reason))

    def _shutdown(self) -> None:
        for job in list(self._active.values()):
            self._finish(job, ("error", RuntimeError("the model was closed")))
            job._request.close()
        self._active.clear()
        self.held.release_all()
        # Drop the Engine on its owner thread.
        self._buffer = None
        self._engine = None
        for job in self._queued_jobs():
            self._finish(job, ("error", RuntimeError("the model was closed")))
