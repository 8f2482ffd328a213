"""The stored responses of `POST v1/responses`: bounded by count and by age, least recently used out.

A stored response keeps what chaining needs: the response object as answered and the items the model
read before it (the previous responses' inputs and outputs, then its own input; never `instructions`,
which OpenAI does not carry over). A follow-up with `previous_response_id` reads those items plus the
response's output, so a response stays chainable when the ones before it have been evicted.
Items are shared between entries, not copied: a chain of N turns costs N references per entry.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import FoundryError, InvalidRequest

DEFAULT_MAX_ENTRIES = 1000
DEFAULT_MAX_AGE_S = 24 * 3600.0

Item = dict[str, Any]


class ResponseNotFound(FoundryError):
    status = 404
    code = "not_found"


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]  # the response object, as answered
    input_items: tuple[Item, ...]  # what the model read, oldest first (instructions aside)
    stored_at: float  # the store's clock

    @property
    def id(self) -> str:
        return self.response["id"]

    def conversation(self) -> tuple[Item, ...]:
        """The items a follow-up continues: this response's input, then its output."""
        return (*self.input_items, *self.response.get("output", ()))


class ResponseStore:
    """At most `max_entries` responses, each for at most `max_age_s` seconds after it was stored
    (0 for either: no limit of that kind). Reading an entry makes it the most recently used.
    Thread-safe; `clock` is injectable for tests."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._clock = clock
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, response: dict[str, Any], input_items: tuple[Item, ...]) -> StoredResponse:
        entry = StoredResponse(response, input_items, self._clock())
        with self._lock:
            self._entries[entry.id] = entry
            self._entries.move_to_end(entry.id)
            self._evict()
        return entry

    def get(self, response_id: str) -> StoredResponse:
        """The stored response; `ResponseNotFound` (404) when unknown, deleted, evicted or expired."""
        entry = self.find(response_id)
        if entry is None:
            raise ResponseNotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return entry

    def previous(self, response_id: str) -> StoredResponse:
        """The response a request chains from; a 400 naming `previous_response_id` when it is gone."""
        entry = self.find(response_id)
        if entry is None:
            raise InvalidRequest(
                f"Previous response with id '{response_id}' not found. Responses are kept while the "
                "server runs, within its store's size and age limits, and only when created with "
                "store: true.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return entry

    def find(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            self._evict()
            entry = self._entries.get(response_id)
            if entry is not None:
                self._entries.move_to_end(response_id)
            return entry

    def delete(self, response_id: str) -> StoredResponse:
        with self._lock:
            self._evict()
            entry = self._entries.pop(response_id, None)
        if entry is None:
            raise ResponseNotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return entry

    def __len__(self) -> int:
        with self._lock:
            self._evict()
            return len(self._entries)

    def _evict(self) -> None:
        if self.max_age_s > 0:
            oldest_kept = self._clock() - self.max_age_s
            for key in [k for k, e in self._entries.items() if e.stored_at <= oldest_kept]:
                del self._entries[key]
        if self.max_entries > 0:
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
