"""A streamed chat completion with something done to the server while the answer is still coming."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx


async def stream_and_act(
    http: httpx.AsyncClient, body: dict[str, Any], action: Callable[[], Awaitable[None]], *, after: int = 2
) -> list[str]:
    """POSTs `body` to `v1/chat/completions` and returns the stream's non-empty lines; `action` runs
    once `after` lines have come, with the stream still open."""
    events: list[str] = []
    async with http.stream("POST", "v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line:
                continue
            events.append(line)
            if len(events) == after:
                await action()
    return events


def last_event(events: list[str]) -> dict[str, Any]:
    return json.loads(events[-1].removeprefix("data: "))
