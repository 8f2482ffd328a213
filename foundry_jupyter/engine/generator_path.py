"""The og.Generator path: one request generated in the caller's own thread, token by token.

Greedy, unguided answers can continue a held generator (`conversations`): the text is the same as a
cold run's, and the shared history is not computed again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from foundry_jupyter.engine.conversations import HEADROOM_TOKENS, GeneratorPool, HeldGenerator
from foundry_jupyter.engine.failures import as_foundry_error
from foundry_jupyter.engine.params import Generation, Sampling
from foundry_jupyter.engine.prompts import Prompts
from foundry_jupyter.engine.stops import StopFilter
from foundry_jupyter.engine.types import Delta, FinishReason, Usage

Taken = tuple[HeldGenerator, int]  # a held generator and how many of its tokens to reuse


class GeneratorPath:
    def __init__(
        self, og_model: Any, prompts: Prompts, *, context_length: int, eos: frozenset[int], max_held: int
    ) -> None:
        self._og_model = og_model
        self._prompts = prompts
        self._context_length = context_length
        self._eos = eos
        self._holds = max_held > 0
        self._pool = GeneratorPool(max_held)
        self._closed = False
        # The cancel events of reusable generations under way: a cancelled one is held when it ends.
        self._running: set[threading.Event] = set()
        self._ended = threading.Condition()

    def reuses(self, sampling: Sampling, guidance: tuple[str, str] | None) -> bool:
        """Whether such a request may continue (and afterwards be held as) a conversation."""
        return not sampling.do_sample and guidance is None and self._holds

    def wait_for_cancelled(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until the cancelled generations still making their last token
        have ended and been held. A client that cancels and at once sends a longer prompt (inline
        completion, at each keystroke) then finds the state it left instead of a cold start."""
        with self._ended:
            self._ended.wait_for(lambda: not any(c.is_set() for c in self._running), timeout_s)

    def take_most_of(self, ids: list[int], needed: int) -> Taken | None:
        """A held generator that spares at least half of the prompt `ids`."""
        return self._pool.take(ids, needed, min_fraction=0.5)

    @property
    def held(self) -> int:
        return len(self._pool)

    def close(self) -> None:
        self._closed = True
        self._pool.clear()
        self._og_model = None

    def deltas(self, gen: Generation, taken: Taken | None = None) -> Iterator[Delta]:
        """Start generating (errors raise here, not mid-stream); the returned iterator streams it."""
        import numpy as np

        reusable = self.reuses(gen.sampling, gen.guidance)
        if taken is None and reusable:
            taken = self._pool.take(gen.ids, gen.needed)
        generator, cached, max_length = None, 0, gen.needed
        if taken is not None:
            held, cached = taken
            try:
                held.generator.rewind_to(cached)
                held.generator.append_tokens(np.asarray(gen.ids[cached:], dtype=np.int32))
                generator, max_length = held.generator, held.max_length
            except Exception:  # a state og will not continue from: answer cold instead
                generator, cached = None, 0
        try:
            if generator is None:
                if reusable:
                    max_length = min(self._context_length, gen.needed + HEADROOM_TOKENS)
                generator = self._new_generator(gen, max_length)
        except Exception as exc:
            raise as_foundry_error(exc) from exc
        after = (lambda: self._hold(generator, max_length)) if reusable else None
        stream = self._prompts.create_stream()
        return self._loop(gen, generator, stream, cached, after)

    def _new_generator(self, gen: Generation, max_length: int) -> Any:
        import numpy as np
        import onnxruntime_genai as og

        sampling = gen.sampling
        params = og.GeneratorParams(self._og_model)
        options: dict[str, Any] = {"max_length": max_length, "do_sample": sampling.do_sample}
        if sampling.do_sample:
            for key in ("temperature", "top_p", "top_k"):
                value = getattr(sampling, key)
                if value is not None:
                    options[key] = value
            if sampling.seed is not None:
                options["random_seed"] = int(sampling.seed) & 0x7FFFFFFF  # og takes a non-negative int32
        params.set_search_options(**options)
        if gen.guidance is not None:
            params.set_guidance(*gen.guidance)
        generator = og.Generator(self._og_model, params)
        generator.append_tokens(np.asarray(gen.ids, dtype=np.int32))
        return generator

    def _hold(self, generator: Any, max_length: int) -> None:
        sequence = [int(t) for t in generator.get_sequence(0)]
        if len(sequence) < max_length and not self._closed:
            self._pool.put(HeldGenerator(generator, sequence, max_length))

    def _loop(
        self,
        gen: Generation,
        generator: Any,
        stream: Any,
        cached: int,
        after: Callable[[], None] | None,
    ) -> Iterator[Delta]:
        cancel = gen.cancel
        text_filter = StopFilter(gen.stops)
        count = 0
        finish: FinishReason = "length"
        complete = False
        tracked = after is not None and cancel is not None
        try:
            if tracked:
                with self._ended:
                    self._running.add(cancel)
            while count < gen.max_new:
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if generator.is_done():
                    finish = "stop"
                    break
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                if token in self._eos:
                    finish = "stop"
                    break
                count += 1
                piece = text_filter.feed(stream.decode(token))
                if piece:
                    yield Delta(text=piece)
                if text_filter.stopped:
                    finish = "stop"
                    break
            complete = True
        finally:
            if after is not None and complete:
                after()  # held for a follow-up only when its state is whole
            if tracked:
                with self._ended:
                    self._running.discard(cancel)
                    self._ended.notify_all()
        usage = Usage(prompt_tokens=len(gen.ids), completion_tokens=count, cached_tokens=cached)
        yield Delta(text=text_filter.flush(), finish_reason=finish, usage=usage)
