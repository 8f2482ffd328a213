"""Held og.Generator conversations: a follow-up request rewinds to the shared prefix and goes on from there.

OpenAI clients resend the whole history with every request. A generator that answered the previous
turn still holds the KV cache of that history; when the new prompt's token ids share a prefix with
the generator's sequence, `rewind_to(shared)` + `append_tokens(rest)` replaces recomputing it all.
Only greedy, unguided generations are held: a sampler's or a grammar's state would not match a cold
run's, and the text must be the same as a cold run's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

# A held conversation also gets this much room beyond its own request, for the next turn.
HEADROOM_TOKENS = 512
# Reusing fewer tokens than this is not worth holding a generator for.
_MIN_SHARED = 8


@dataclass
class HeldGenerator:
    generator: Any
    ids: list[int]  # the generator's sequence: prompt + generated (its KV cache covers these)
    max_length: int


def shared_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class GeneratorPool:
    """A small LRU of generators waiting for a follow-up. Thread-safe; a taken one is the taker's."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._held: OrderedDict[int, HeldGenerator] = OrderedDict()
        self._lock = threading.Lock()

    def _best(self, ids: list[int], needed_length: int) -> tuple[int | None, int]:
        best, best_shared = None, _MIN_SHARED - 1
        for key, held in self._held.items():
            if held.max_length < needed_length:
                continue
            shared = shared_prefix(held.ids, ids)
            if shared > best_shared:
                best, best_shared = key, shared
        return best, best_shared

    def take(
        self, ids: list[int], needed_length: int, min_fraction: float = 0.0
    ) -> tuple[HeldGenerator, int] | None:
        """The held generator sharing the longest prefix with `ids` (at least `min_fraction` of it),
        and how many tokens of it to reuse."""
        with self._lock:
            best, best_shared = self._best(ids, needed_length)
            if best is None or best_shared < min_fraction * len(ids):
                return None
            held = self._held.pop(best)
        # The last token of a held sequence was sampled but never run through the model (its KV is
        # missing), and og 0.18 refuses rewind_to(len - 1) as well: reuse at most len - 2.
        # Something must also be appended to get fresh logits.
        return held, min(best_shared, len(held.ids) - 2, len(ids) - 1)

    def put(self, held: HeldGenerator) -> None:
        if self._capacity <= 0:
            return
        with self._lock:
            self._held[id(held.generator)] = held
            while len(self._held) > self._capacity:
                self._held.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()

    def __len__(self) -> int:
        return len(self._held)
