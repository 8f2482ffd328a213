"""The engine path: a request handed to a batching owner thread (`scheduler`'s og.Engine or `slots`'
own KV rows), its tokens streamed back to the caller's thread as text."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from queue import Empty

from foundry_jupyter.engine.conversations import HEADROOM_TOKENS
from foundry_jupyter.engine.failures import as_foundry_error, is_request_error
from foundry_jupyter.engine.params import Generation
from foundry_jupyter.engine.prompts import Prompts
from foundry_jupyter.engine.scheduler import EngineScheduler, Job
from foundry_jupyter.engine.slots import SlotScheduler
from foundry_jupyter.engine.stops import StopFilter
from foundry_jupyter.engine.stream import GENERATOR, Backend
from foundry_jupyter.engine.types import Delta, FinishReason, Usage

_POLL_S = 0.05  # how often a waiting caller looks at its cancel event and the engine's health
_OG_FINISH: dict[str, FinishReason] = {
    "EOS": "stop",
    "STOP_STRING": "stop",
    "MAX_GENERATED_TOKENS": "length",
    "MAX_SESSION_TOKENS": "length",
    "CANCELLED": "cancelled",
    "FAILED": "error",
}


class EnginePath:
    def __init__(
        self,
        scheduler: EngineScheduler | SlotScheduler,
        prompts: Prompts,
        *,
        context_length: int,
        check_open: Callable[[], None],
    ) -> None:
        self.scheduler = scheduler
        self._prompts = prompts
        self._context_length = context_length
        self._check_open = check_open

    def takes(self, gen: Generation) -> bool:
        """Whether this request should run on the Engine rather than og.Generator."""
        scheduler = self.scheduler
        if not scheduler.alive:
            return False
        if not scheduler.accepts(gen):
            return False
        if scheduler.holds_prefix_of(gen.ids, gen.needed):
            return True  # the Engine holds this conversation's cache
        # A statically batched Engine makes a request that arrives mid-batch wait for the whole batch;
        # og.Generator starts it now instead.
        return not (scheduler.static and scheduler.batch_running)

    def start(
        self, gen: Generation, backend: Backend, fallback: Callable[[], Iterator[Delta]]
    ) -> Iterator[Delta]:
        """Submit the request and wait until the Engine took it, so that a request it refuses fails
        here. `fallback` answers on og.Generator if the Engine fails before a token streamed, and
        `backend` then says so."""
        # Room for a follow-up turn, without reserving the whole context for every request.
        session = min(self._context_length, gen.needed + HEADROOM_TOKENS)
        job = Job(
            ids=gen.ids,
            max_new=gen.max_new,
            sampling=gen.sampling,
            guidance=gen.guidance,
            session_tokens=session,
        )
        self.scheduler.submit(job)
        while not job.started.wait(_POLL_S):
            if not self.scheduler.alive:
                break  # the stream reports it
        if job.start_error is not None and is_request_error(job.start_error):
            raise as_foundry_error(job.start_error)
        return self._deltas(job, gen.stops, gen.cancel, backend, fallback)

    def _deltas(
        self,
        job: Job,
        stops: tuple[str, ...],
        cancel: threading.Event | None,
        backend: Backend,
        fallback: Callable[[], Iterator[Delta]],
    ) -> Iterator[Delta]:
        stream = self._prompts.create_stream()
        text_filter = StopFilter(stops)
        count = 0
        finish: FinishReason | None = None
        done = False
        try:
            while True:
                try:
                    event = job.events.get(timeout=_POLL_S)
                except Empty:
                    if cancel is not None and cancel.is_set():
                        job.cancel.set()
                    if not self.scheduler.alive:
                        event = ("error", RuntimeError("the generation engine stopped"))
                    else:
                        continue
                kind = event[0]
                if kind == "error":
                    done = True
                    self._check_open()
                    if count == 0 and not is_request_error(event[1]):
                        # Nothing streamed yet: og.Generator can still answer it.
                        backend.name = GENERATOR
                        yield from fallback()
                        return
                    raise as_foundry_error(event[1])
                if kind == "done":
                    done = True
                    if finish is None:
                        finish = _OG_FINISH.get(event[1], "stop")
                    usage = Usage(
                        prompt_tokens=len(job.ids), completion_tokens=count, cached_tokens=job.cached
                    )
                    yield Delta(
                        text="" if text_filter.stopped else text_filter.flush(),
                        finish_reason=finish,
                        usage=usage,
                    )
                    return
                if finish is not None:  # already stopped or cancelled: the turn is winding down
                    continue
                count += 1
                piece = text_filter.feed(stream.decode(event[1]))
                if text_filter.stopped:
                    finish = "stop"
                    job.cancel.set()
                elif cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    job.cancel.set()
                if piece:
                    yield Delta(text=piece)
        finally:
            if not done:  # the consumer left early: stop generating for nobody, and wait for that
                job.cancel.set()
                self._drain(job)

    def _drain(self, job: Job, timeout_s: float = 10.0) -> None:
        """Wait (bounded) until the engine has finished a cancelled job, dropping its remaining tokens."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.scheduler.alive:
            try:
                if job.events.get(timeout=_POLL_S)[0] in ("done", "error"):
                    return
            except Empty:
                continue
