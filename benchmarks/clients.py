"""Streaming load generator for any OpenAI-compatible chat API, over raw HTTP.

The same code drives our REST API and the peer's web service, so client overhead is equal for both.
Tokens are counted from `stream_options.include_usage`: streamed pieces undercount them on the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .rawhttp import Connection
from .stats import LoadResult, RequestTiming, TurnResult

DEFAULT_PROMPT = "Write a long story about a lighthouse keeper who finds a map."
SYSTEM = "You are a helpful assistant."


class Endpoint:
    """An OpenAI base URL (`.../v1`) and the headers every request carries."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = headers or {}
        self.chat_path = urlsplit(self.base_url).path + "/chat/completions"

    def connect(self) -> Connection:
        return Connection(self.base_url, self.headers)


def chat_body(model: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def stream_chat(
    conn: Connection,
    path: str,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    *,
    keep_text: bool = False,
) -> RequestTiming:
    """One streamed chat completion; raises on an HTTP error or an incomplete stream."""
    start = time.perf_counter()
    ttft = None
    usage: dict[str, Any] | None = None
    pieces: list[str] = []
    pending = b""
    done = False
    async for data in conn.stream("POST", path, chat_body(model, messages, max_tokens)):
        pending += data
        *events, pending = pending.split(b"\n\n")
        for event in events:
            if not event.startswith(b"data:"):
                continue
            payload = event[5:].strip()
            if payload == b"[DONE]":
                done = True
                continue
            # Parse only the chunks whose content matters, so the decode rate measured is the server's.
            if ttft is not None and not keep_text and b'"usage"' not in payload:
                continue
            chunk = json.loads(payload)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if ttft is None:
                        ttft = time.perf_counter() - start
                    pieces.append(content)
    total = time.perf_counter() - start
    if not done:
        raise RuntimeError("stream ended without data: [DONE]")
    if usage is None:
        raise RuntimeError("stream ended without a usage chunk")
    details = usage.get("prompt_tokens_details") or {}
    return RequestTiming(
        ttft=total if ttft is None else ttft,
        total=total,
        completion_tokens=int(usage.get("completion_tokens", 0)),
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        cached_tokens=int(details.get("cached_tokens") or 0),
        text="".join(pieces),
    )


def load_messages(client: int, n: int, prompt: str = DEFAULT_PROMPT) -> list[dict[str, str]]:
    # A distinct opening per request keeps servers from answering out of a prefix cache.
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{client}-{n}. {prompt}"}]


def stagger_offsets(clients: int, stagger_s: float, seed: int = 0) -> list[float]:
    """Each client's start, drawn uniformly in [0, stagger_s): the same draws for every system."""
    draw = random.Random(seed)
    return [draw.uniform(0, stagger_s) if stagger_s > 0 else 0.0 for _ in range(clients)]


def long_messages(salt: int, words: int) -> list[dict[str, str]]:
    """A long prompt (about 2.8 tokens a word for SmolLM2); `salt` keeps prefix caches out of it."""
    notes = " ".join(f"word{(i * 7 + salt) % 50}" for i in range(words))
    return [
        {"role": "system", "content": f"Session {salt}. {SYSTEM}"},
        {"role": "user", "content": f"Notes: {notes}\nNow write a long story about a dragon."},
    ]


async def run_load(
    endpoint: Endpoint,
    *,
    system: str,
    label: str,
    model: str,
    clients: int,
    requests_per_client: int,
    max_tokens: int,
    settle: Callable[[], None] | None = None,
    stagger_s: float = 0.0,
    seed: int = 0,
) -> LoadResult:
    """`clients` streams at once, each sending `requests_per_client` requests back to back.

    Each client first opens its connection with one short untimed request, so connection set-up and
    a cold model do not land in the figures; `settle` then waits until the server has adapted to that
    burst (ours: runner processes it started for it are ready). With `stagger_s`, client i starts its
    first request `stagger_offsets(...)[i]` seconds late (random arrivals instead of lockstep).
    """
    result = LoadResult(system=system, model=label, clients=clients, wall_s=0.0)
    offsets = stagger_offsets(clients, stagger_s, seed)
    conns = [endpoint.connect() for _ in range(clients)]
    try:
        await asyncio.gather(
            *(
                stream_chat(c, endpoint.chat_path, model, load_messages(i, 999), 2)
                for i, c in enumerate(conns)
            )
        )
        if settle is not None:
            await asyncio.to_thread(settle)

        async def one_client(index: int, conn: Connection) -> None:
            if offsets[index]:
                await asyncio.sleep(offsets[index])
            for n in range(requests_per_client):
                try:
                    timing = await stream_chat(
                        conn, endpoint.chat_path, model, load_messages(index, n), max_tokens
                    )
                    result.requests.append(timing)
                except Exception as exc:  # recorded and reported; the quick test asserts there are none
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    await conn.close()

        start = time.perf_counter()
        await asyncio.gather(*(one_client(i, c) for i, c in enumerate(conns)))
        result.wall_s = time.perf_counter() - start
    finally:
        for conn in conns:
            await conn.close()
    return result


async def run_prompts(
    endpoint: Endpoint,
    *,
    system: str,
    label: str,
    model: str,
    words: int,
    rounds: int,
    max_tokens: int,
    salt_base: int = 1000,
) -> LoadResult:
    """One client, `rounds` long prompts of `words` words each (distinct openings): prompt reading
    speed from the time to the first token, and decode speed at that context length."""
    result = LoadResult(system=system, model=label, clients=1, wall_s=0.0)
    conn = endpoint.connect()
    try:
        await stream_chat(conn, endpoint.chat_path, model, load_messages(0, 999), 2)
        start = time.perf_counter()
        for r in range(rounds):
            messages = long_messages(salt_base + r, words)
            result.requests.append(await stream_chat(conn, endpoint.chat_path, model, messages, max_tokens))
        result.wall_s = time.perf_counter() - start
    finally:
        await conn.close()
    return result


def conversation(salt: int, first_answer: str | None = None) -> list[dict[str, str]]:
    """A two-turn chat; `salt` (three digits) changes the opening without changing its length."""
    messages = [
        {"role": "system", "content": f"Session {salt}. {SYSTEM} Answer in detail, with examples."},
        {"role": "user", "content": "Explain how a lighthouse lens focuses light over long distances."},
    ]
    if first_answer is not None:
        messages += [
            {"role": "assistant", "content": first_answer},
            {"role": "user", "content": "Now explain how the lamp was kept burning before electricity."},
        ]
    return messages


async def run_second_turn(
    endpoint: Endpoint,
    *,
    system: str,
    label: str,
    model: str,
    rounds: int,
    first_tokens: int,
    salt_base: int,
) -> TurnResult:
    """Second-turn TTFT (the whole history resent, as OpenAI clients do) against a cold prompt.

    The cold prompt is the same second-turn conversation under another salt, never seen before: same
    shape, same length (both prompt token counts are recorded).
    """
    result = TurnResult(system=system, model=label)
    conn = endpoint.connect()
    path = endpoint.chat_path
    try:
        for r in range(rounds):
            salt = salt_base + 2 * r
            first = await stream_chat(conn, path, model, conversation(salt), first_tokens, keep_text=True)
            second = await stream_chat(conn, path, model, conversation(salt, first.text), 4)
            cold = await stream_chat(conn, path, model, conversation(salt + 1, first.text), 4)
            result.second_turn_ttft_ms.append(second.ttft * 1000)
            result.cold_ttft_ms.append(cold.ttft * 1000)
            result.prompt_tokens = second.prompt_tokens
            result.cold_prompt_tokens = cold.prompt_tokens
            result.cached_tokens = max(result.cached_tokens, second.cached_tokens)
    finally:
        await conn.close()
    return result


async def poll_latency(
    conn: Connection, path: str, stop: asyncio.Event, interval_s: float = 0.05, max_samples: int = 5000
) -> list[float]:
    """GET `path` every `interval_s` until `stop` is set; latencies in milliseconds."""
    samples: list[float] = []
    try:
        while not stop.is_set() and len(samples) < max_samples:
            start = time.perf_counter()
            await conn.get_json(path)
            samples.append((time.perf_counter() - start) * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    finally:
        await conn.close()
    return samples


async def load_with_polling(
    endpoint: Endpoint, poll: Connection, poll_path: str, **load_kwargs: Any
) -> tuple[LoadResult, list[float]]:
    """Run a load and poll `poll_path` (e.g. Jupyter's /api/status) while it runs."""
    stop = asyncio.Event()
    poller = asyncio.create_task(poll_latency(poll, poll_path, stop))
    try:
        load = await run_load(endpoint, **load_kwargs)
    finally:
        stop.set()
    return load, await poller
