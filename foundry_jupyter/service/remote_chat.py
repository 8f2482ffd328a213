"""A remote engine's chat completion, read the way the responses code reads a runner's generation.

`v1/responses` for `ENGINE/MODEL` runs as a chat completion at the engine: most OpenAI-compatible
engines (Ollama, older vLLM and SGLang) serve `/v1/chat/completions` but not `/v1/responses`.
`RemoteChatStream` has what `responses` consumes from a `GenerationStream` (text pieces, then
`finish_reason`, `usage` and `tool_calls`), filled from the engine's SSE chunks or its JSON answer, so
the responses code has one path for local and remote models. Failures are the proxy's `EngineError`s.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from ..engine.types import ToolCall, Usage
from .pieces import TextPieces
from .remote import EngineError, ProxyCall, RemoteEngines
from .schemas import ChatCompletionRequest


def upstream_body(req: ChatCompletionRequest, *, stream: bool) -> dict[str, Any]:
    """`req` as an OpenAI chat body. The limit goes as `max_tokens`, which every compatible engine
    reads (Ollama does not read `max_completion_tokens`); usage is asked for when streaming."""
    body = req.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
    budget = req.token_budget()
    body.pop("max_completion_tokens", None)
    if budget is not None:
        body["max_tokens"] = budget
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    else:
        body.pop("stream_options", None)
    return body


async def open_remote_chat(
    remote: RemoteEngines, req: ChatCompletionRequest, *, stream: bool
) -> RemoteChatStream:
    """Send `req` (naming `ENGINE/MODEL` or an engine alias) to the engine's chat completions; returns
    once its answer has started, so an engine that refuses or cannot be reached fails here."""
    call = await remote.open("chat/completions", upstream_body(req, stream=stream))
    return RemoteChatStream(call, streamed=stream)


class RemoteChatStream(TextPieces):
    """The engine's answer as text pieces; afterwards `finish_reason`, `usage` and `tool_calls` are set.
    `cancel()` (the client left) closes the upstream request."""

    def __init__(self, call: ProxyCall, *, streamed: bool) -> None:
        self._call = call
        self._streamed = streamed
        self.model_id = call.model_id  # as the caller named it
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.tool_calls: tuple[ToolCall, ...] = ()

    async def parts(self) -> AsyncIterator[tuple[str, str]]:
        """Yield `(reasoning, text)` pieces as the engine sends them (`reasoning_content`, or vLLM's
        newer `reasoning`)."""
        calls = _CallParts()
        try:
            if self._streamed:
                events = self._call.events()
                try:
                    async for chunks in events:
                        for chunk in chunks:
                            if part := self._read_chunk(chunk, calls):
                                yield part
                finally:
                    await events.aclose()
            else:
                answer = await self._call.json()
                if part := self._read_answer(answer, calls):
                    yield part
        finally:
            await self._call.aclose()
        self.tool_calls = calls.finished()
        self.finish_reason = self.finish_reason or ("tool_calls" if self.tool_calls else "stop")

    def _read_chunk(self, chunk: dict[str, Any], calls: _CallParts) -> tuple[str, str] | None:
        if isinstance(chunk.get("usage"), dict):
            self.usage = _usage(chunk["usage"])
        choice = _first_choice(chunk)
        if choice is None:
            return None
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        delta = choice.get("delta") or {}
        calls.add(delta.get("tool_calls"))
        return _text(delta)

    def _read_answer(self, answer: dict[str, Any], calls: _CallParts) -> tuple[str, str] | None:
        choice = _first_choice(answer)
        if choice is None:
            raise EngineError(
                f"Engine '{self._call.engine.name}' answered without choices.",
                status=502,
                code="engine_bad_response",
            )
        if isinstance(answer.get("usage"), dict):
            self.usage = _usage(answer["usage"])
        self.finish_reason = choice.get("finish_reason")
        message = choice.get("message") or {}
        calls.add(message.get("tool_calls"))
        return _text(message)

    def cancel(self) -> None:
        self._call.cancel()

    @property
    def cancelled(self) -> bool:
        return self._call.cancelled


class _CallParts:
    """Tool calls as a stream sends them: the first delta of a call has its id and name, the following
    ones more of its arguments, matched by `index` (engines that send each call whole may leave it out)."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, deltas: Any) -> None:
        for delta in deltas if isinstance(deltas, list) else ():
            if not isinstance(delta, dict):
                continue
            index = delta.get("index")
            if not isinstance(index, int):
                index = len(self._calls) if delta.get("id") or not self._calls else max(self._calls)
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            function = delta.get("function") or {}
            call["id"] = call["id"] or str(delta.get("id") or "")
            call["name"] = call["name"] or str(function.get("name") or "")
            arguments = function.get("arguments")
            if isinstance(arguments, dict):  # some engines send the object itself
                arguments = json.dumps(arguments)
            call["arguments"] += arguments or ""

    def finished(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(
                id=call["id"] or f"call_{secrets.token_hex(12)}",
                name=call["name"],
                arguments=call["arguments"] or "{}",
            )
            for _, call in sorted(self._calls.items())
        )


def _first_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def _text(message: dict[str, Any]) -> tuple[str, str] | None:
    text = message.get("content")
    thought = message.get("reasoning_content") or message.get("reasoning")
    text = text if isinstance(text, str) else ""
    thought = thought if isinstance(thought, str) else ""
    return (thought, text) if text or thought else None


def _usage(data: dict[str, Any]) -> Usage:
    def count(value: Any) -> int:
        return value if isinstance(value, int) else 0

    prompt = data.get("prompt_tokens_details") or {}
    completion = data.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=count(data.get("prompt_tokens")),
        completion_tokens=count(data.get("completion_tokens")),
        cached_tokens=count(prompt.get("cached_tokens") if isinstance(prompt, dict) else None),
        reasoning_tokens=count(completion.get("reasoning_tokens") if isinstance(completion, dict) else None),
    )
