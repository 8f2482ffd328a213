"""OpenAI-compatible semantics: models, chat and text completions, token counts.

Plain async functions over the pydantic requests in `schemas`; the server handlers only parse, call
and write. A streaming answer is a `GenerationStream`: it has already received the first event from
the runner when returned, so a request that fails early (unknown model, prompt over the context)
still gets a plain 4xx instead of a stream holding one error.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from ..engine.types import GenerationParams, ResponseFormat, ToolCall, Usage
from ..errors import FoundryError, ModelNotFound
from ..models import view
from . import wire
from .core import FoundryService
from .pieces import TextPieces
from .prompt_size import refuse_oversized_prompt
from .runners import RunnerCall
from .schemas import ChatCompletionRequest, CompletionRequest, TokenCountRequest


class GenerationStream(TextPieces):
    """Text pieces from a runner, as they are made. `cancel()` stops the generation."""

    def __init__(self, call: RunnerCall, first: dict[str, Any]) -> None:
        self._call = call
        self._first: dict[str, Any] | None = first
        self.model_id = call.runner.model_id
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.tool_calls: tuple[ToolCall, ...] = ()

    @classmethod
    async def open(
        cls, service: FoundryService, name: str, request: dict[str, Any], **load: Any
    ) -> GenerationStream:
        runner = await service.runner_for(name, **load)
        refuse_oversized_prompt(request, runner.context_length)
        call = await service.supervisor.open(runner, request)
        try:
            first = await call.next()
        except BaseException:
            call.close()
            raise
        return cls(call, first or {})

    async def parts(self) -> AsyncIterator[tuple[str, str]]:
        """Yield `(reasoning, text)` pieces; afterwards `finish_reason`, `usage` and `tool_calls` are
        set. Messages that arrived together become one piece, so a writer that fell behind catches up
        in one write. `reasoning` is a reasoning model's thinking (`engine.reasoning`), else empty."""
        try:
            message = self._first
            self._first = None
            while message is not None:
                text = message.get("t") or ""
                thought = message.get("r") or ""
                while "done" not in message and self._call.has_next:
                    try:
                        message = await self._call.next() or {}
                    except FoundryError:
                        if text or thought:
                            yield thought, text  # what came before the failure still reaches the client
                        raise
                    text += message.get("t") or ""
                    thought += message.get("r") or ""
                if text or thought:
                    yield thought, text
                if "done" in message:
                    done = message["done"]
                    self.finish_reason = done.get("finish_reason") or "stop"
                    self.usage = wire.usage_from_wire(done.get("usage"))
                    self.tool_calls = wire.tool_calls_from_wire(done.get("tool_calls"))
                    return
                message = await self._call.next()
        finally:
            self._call.close()

    def cancel(self) -> None:
        self._call.cancel()

    @property
    def cancelled(self) -> bool:
        return self._call.cancelled


# ---- models ----------------------------------------------------------------------------------
def _model_object(model_id: str, created: int, owner: str, **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner or "local", **extra}


async def list_models(service: FoundryService) -> dict[str, Any]:
    """`GET v1/models`: every loaded or cached model."""
    cached = await service.run("list_cached")
    seen: dict[str, dict[str, Any]] = {}
    for model in cached:
        created = int(model.last_used.timestamp()) if model.last_used else int(service.started_at)
        seen[model.id] = _model_object(model.id, created, model.publisher, alias=model.alias, loaded=False)
    for runner in service.supervisor.loaded():
        entry = seen.setdefault(
            runner.model_id,
            _model_object(runner.model_id, int(runner.started_at), "local", alias=runner.alias),
        )
        entry["loaded"] = True
        entry.setdefault("context_length", runner.context_length)
    manager = await service.manager()
    metadata = await asyncio.to_thread(view.model_metadata, manager)
    for model_id, model in seen.items():
        model.update({k: v for k, v in metadata.get(model_id, {}).items() if v is not None})
    remote = await service.remote.model_objects(int(service.started_at))
    return {"object": "list", "data": [*seen.values(), *remote]}


async def get_model(service: FoundryService, name: str) -> dict[str, Any]:
    """`GET v1/models/{id}`: by full id or alias, like every other route."""
    models = (await list_models(service))["data"]
    for model in models:
        if model["id"] == name:
            return model
    if (row := await service.remote.row(name)) is not None:  # a model the engine does not list
        return next(iter(await _remote_object(service, row)), {})
    entry = await service.resolve(name)  # ModelNotFound (404) for names the catalog does not know
    for model in models:
        if model["id"] == entry.id:
            return model
    raise ModelNotFound(
        f"Model '{entry.id}' is in the catalog but not downloaded; POST foundry/openai/download to fetch it.",
        param="model",
    )


async def _remote_object(service: FoundryService, row: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _model_object(row["id"], int(service.started_at), row["engine"], alias=row["alias"], loaded=False)
        | {k: row[k] for k in ("remote", "engine", "health", "latencyMs")}
    ]


# ---- generation parameters ------------------------------------------------------------------
def _params(req: ChatCompletionRequest | CompletionRequest) -> GenerationParams:
    fmt = None
    spec = getattr(req, "response_format", None)
    if spec is not None and spec.type == "json_object":
        fmt = ResponseFormat(kind="json_object")
    elif spec is not None and spec.type == "json_schema":
        fmt = ResponseFormat(kind="json_schema", schema=spec.json_schema.schema_ or {"type": "object"})
    tools: dict[str, Any] = {}
    if isinstance(req, ChatCompletionRequest) and req.tools:
        tools = {
            "tools": req.engine_tools(),
            "tool_choice": req.engine_tool_choice(),
            "parallel_tool_calls": req.parallel_tool_calls is not False,
        }
    thinking = req.thinking() if isinstance(req, ChatCompletionRequest) else None
    return GenerationParams(
        max_tokens=req.token_budget(),
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        seed=req.effective_seed(),
        stop=req.stop_list(),
        response_format=fmt,
        thinking=thinking,
        **tools,
    )


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    data = usage.to_dict()
    data["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return data


def _finish(reason: str | None) -> str:
    return reason if reason in ("stop", "length", "tool_calls") else "stop"


# ---- chat ---------------------------------------------------------------------------------
async def open_chat(service: FoundryService, req: ChatCompletionRequest) -> GenerationStream:
    request = {"op": "chat", "messages": req.engine_messages(), "params": wire.params_to_wire(_params(req))}
    return await GenerationStream.open(service, req.model, request, ttl=req.ttl, ep=req.ep)


async def collect_chat(stream: GenerationStream) -> dict[str, Any]:
    """A non-streaming `chat.completion` from a stream."""
    parts = [part async for part in stream.parts()]
    text = "".join(text for _, text in parts)
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if thought := "".join(thought for thought, _ in parts):
        message["reasoning_content"] = thought  # DeepSeek's and vLLM's field for the thinking
    if stream.tool_calls:
        # OpenAI's shape: content is null when the answer is only calls.
        message["content"] = text or None
        message["tool_calls"] = [call.to_openai() for call in stream.tool_calls]
    return {
        "id": _new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": stream.model_id,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish(stream.finish_reason),
                "logprobs": None,
            }
        ],
        "usage": _usage(stream.usage),
        "system_fingerprint": None,
    }


async def chat_chunks(
    stream: GenerationStream, req: ChatCompletionRequest
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """`chat.completion.chunk` objects, role first, usage last when asked for; each list yielded is
    what can go out together (the role with the first text, the last chunks with each other)."""
    base = {
        "id": _new_id("chatcmpl"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": stream.model_id,
        "system_fingerprint": None,
    }
    with_usage = req.include_usage()

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        data = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if with_usage:
            data["usage"] = None
        return data

    opening = [chunk({"role": "assistant", "content": ""})]
    async for thought, piece in stream.parts():
        delta = {"reasoning_content": thought} if thought else {}
        yield [*opening, chunk({**delta, "content": piece} if piece else delta)]
        opening = []
    # The engine knows a call once it is complete: each comes whole, in one chunk.
    calls = [chunk({"tool_calls": [{"index": i, **c.to_openai()}]}) for i, c in enumerate(stream.tool_calls)]
    closing = [*opening, *calls, chunk({}, _finish(stream.finish_reason))]
    if with_usage:
        closing.append({**base, "choices": [], "usage": _usage(stream.usage)})
    yield closing


# ---- legacy completions -------------------------------------------------------------------
async def open_text(service: FoundryService, req: CompletionRequest) -> GenerationStream:
    request = {
        "op": "text",
        "prompt": req.prompt_text(),
        "suffix": req.suffix or "",
        "params": wire.params_to_wire(_params(req)),
    }
    return await GenerationStream.open(service, req.model, request, ttl=req.ttl, ep=req.ep)


async def collect_text(stream: GenerationStream) -> dict[str, Any]:
    text = "".join([piece async for piece in stream.pieces()])
    return {
        "id": _new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": stream.model_id,
        "choices": [
            {"index": 0, "text": text, "finish_reason": _finish(stream.finish_reason), "logprobs": None}
        ],
        "usage": _usage(stream.usage),
    }


async def text_chunks(
    stream: GenerationStream, req: CompletionRequest
) -> AsyncGenerator[list[dict[str, Any]], None]:
    base = {
        "id": _new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": stream.model_id,
    }
    with_usage = req.include_usage()

    def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
        data = {**base, "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}
        if with_usage:
            data["usage"] = None
        return data

    async for piece in stream.pieces():
        yield [chunk(piece)]
    closing = [chunk("", _finish(stream.finish_reason))]
    if with_usage:
        closing.append({**base, "choices": [], "usage": _usage(stream.usage)})
    yield closing


# ---- token count --------------------------------------------------------------------------
async def count_tokens(service: FoundryService, req: TokenCountRequest) -> dict[str, int]:
    """`POST v1/chat/completions/tokenizer/encode/count`: `{"tokenCount": N}` as in Foundry Local."""
    runner = await service.runner_for(req.model)
    result = await service.supervisor.call(runner, {"op": "count", "messages": req.engine_messages()})
    return {"tokenCount": int(result["tokens"])}


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"
