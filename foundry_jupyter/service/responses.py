"""OpenAI's Responses API (`v1/responses`) on top of the chat path.

A request becomes a chat request: `instructions` as the system message, then the stored conversation
of `previous_response_id` (its input items and output), then the new input items; function tools,
`tool_choice` and `text.format` map onto the chat path's tools and structured output. The runner's
conversation reuse sees the same token prefix a chat client resending its history would send, so a
chained request continues the held state of the turn before instead of reading it again (reported
as `usage.input_tokens_details.cached_tokens`).

A remote engine's model (`ENGINE/MODEL`) runs the same chat request as a chat completion at the
engine (`remote_chat`), read into the same pieces, finish reason, usage and tool calls; the stored
conversation, instructions, tools and `text.format` work the same; reuse of the earlier turns is then
the engine's (its `cached_tokens` are passed on).

Answers are response objects; streams are the Responses API's typed events, each with its
`sequence_number`. Stored responses live in a `ResponseStore` (bounded by count and age).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator
from typing import Any

from ..engine.types import ToolCall, Usage
from ..errors import FoundryError, InvalidRequest
from . import openai
from .core import FoundryService
from .openai import GenerationStream
from .remote_chat import RemoteChatStream, open_remote_chat
from .response_schemas import (
    FormatJsonObject,
    FormatJsonSchema,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    MessageItem,
    ResponseCreateRequest,
)
from .response_store import Item, ResponseStore
from .schemas import ChatCompletionRequest, parse

MAX_LIST_LIMIT = 100

# A local runner's generation, or a remote engine's chat completion: the same pieces, finish reason,
# usage and tool calls.
ChatStream = GenerationStream | RemoteChatStream


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# ---- input items: as stored, and as chat messages -------------------------------------------
def _stored_item(item: MessageItem | FunctionCallItem | FunctionCallOutputItem) -> Item:
    """An input item in the shape `input_items` lists, with an id."""
    if isinstance(item, MessageItem):
        part = "output_text" if item.role == "assistant" else "input_text"
        if isinstance(item.content, str):
            content = [_text_part(part, item.content)]
        else:
            content = [p.model_dump() for p in item.content]
            for p in content:
                if p["type"] == "output_text":
                    p.setdefault("annotations", [])
        return {
            "id": item.id or _new_id("msg"),
            "type": "message",
            "role": item.role,
            "status": "completed",
            "content": content,
        }
    if isinstance(item, FunctionCallItem):
        return {
            "id": item.id or _new_id("fc"),
            "type": "function_call",
            "call_id": item.call_id,
            "name": item.name,
            "arguments": item.arguments,
            "status": "completed",
        }
    return {
        "id": item.id or _new_id("fco"),
        "type": "function_call_output",
        "call_id": item.call_id,
        "output": item.text(),
        "status": "completed",
    }


def _refuse_duplicate_ids(items: tuple[Item, ...]) -> None:
    seen: set[str] = set()
    for item in items:
        if item["id"] in seen:
            raise InvalidRequest(
                f"Duplicate item found with id '{item['id']}': an item already in the conversation of "
                "previous_response_id must not be sent again. Remove it from input.",
                param="input",
            )
        seen.add(item["id"])


def _text_part(kind: str, text: str) -> dict[str, Any]:
    if kind == "output_text":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": kind, "text": text}


def chat_messages(items: tuple[Item, ...] | list[Item]) -> list[dict[str, Any]]:
    """Stored items as chat messages: the calls of one turn join the assistant message before them."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            text = "".join(p.get("text", p.get("refusal", "")) for p in item["content"])
            messages.append({"role": item["role"], "content": text})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return messages


# ---- the request --------------------------------------------------------------------------
class ResponseRun:
    """One `POST v1/responses`: the request, what the model reads, and the response as it forms."""

    def __init__(self, req: ResponseCreateRequest, store: ResponseStore) -> None:
        self.req = req
        self.store = store
        self.id = _new_id("resp")
        self.created_at = int(time.time())
        previous = store.previous(req.previous_response_id) if req.previous_response_id else None
        earlier = previous.conversation() if previous is not None else ()
        self.input_items: tuple[Item, ...] = (*earlier, *(_stored_item(i) for i in req.input_items()))
        _refuse_duplicate_ids(self.input_items)
        self.model = req.model
        self.output: list[Item] = []
        self.status = "in_progress"
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.incomplete_details: dict[str, Any] | None = None

    def chat_request(self) -> ChatCompletionRequest:
        req = self.req
        messages = chat_messages(self.input_items)
        if req.instructions:
            messages.insert(0, {"role": "system", "content": req.instructions})
        body: dict[str, Any] = {
            "model": req.model,
            "messages": messages,
            "max_completion_tokens": req.max_output_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "parallel_tool_calls": req.parallel_tool_calls,
            "user": req.user,
            "ttl": req.ttl,
            "ep": req.ep,
        }
        if req.tools:
            body["tools"] = [tool.as_chat() for tool in req.tools]
        if isinstance(req.tool_choice, FunctionChoice):
            body["tool_choice"] = {"type": "function", "function": {"name": req.tool_choice.name}}
        elif req.tool_choice is not None and req.tools:
            body["tool_choice"] = req.tool_choice
        fmt = req.text_format()
        if isinstance(fmt, FormatJsonSchema):
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": fmt.name, "schema": fmt.schema_, "strict": fmt.strict},
            }
        elif isinstance(fmt, FormatJsonObject):
            body["response_format"] = {"type": "json_object"}
        return parse(ChatCompletionRequest, {k: v for k, v in body.items() if v is not None})

    # ---- the response object ---------------------------------------------------------------
    def response(self) -> dict[str, Any]:
        req = self.req
        fmt = req.text_format().model_dump(by_alias=True, exclude_none=True)
        choice = req.tool_choice
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "background": False,
            "error": self.error,
            "incomplete_details": self.incomplete_details,
            "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens,
            "model": self.model,
            "output": list(self.output),
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": req.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "store": req.store,
            "temperature": req.temperature,
            "text": {"format": fmt},
            "tool_choice": choice.model_dump() if isinstance(choice, FunctionChoice) else (choice or "auto"),
            "tools": [tool.model_dump() for tool in req.tools or ()],
            "top_p": req.top_p,
            "truncation": "disabled",
            "usage": self.usage,
            "user": req.user,
            "metadata": dict(req.metadata or {}),
        }

    def finish(self, stream: ChatStream) -> None:
        """Status, usage and details once the stream has ended; stores the response when asked to."""
        if stream.finish_reason == "length":
            self.status = "incomplete"
            self.incomplete_details = {"reason": "max_output_tokens"}
        else:
            self.status = "completed"
        self.usage = _usage(stream.usage)
        self.keep()

    def fail(self, exc: FoundryError) -> None:
        self.status = "failed"
        self.error = {"code": exc.code or "server_error", "message": exc.message}
        self.keep()

    def keep(self) -> None:
        if self.req.store:
            self.store.put(self.response(), self.input_items)


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def _message(text: str, status: str) -> Item:
    return {
        "id": _new_id("msg"),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [_text_part("output_text", text)],
    }


def _function_call(call: ToolCall, status: str = "completed") -> Item:
    return {
        "id": _new_id("fc"),
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
    }


# ---- create -----------------------------------------------------------------------------------
async def open_response(
    service: FoundryService, store: ResponseStore, req: ResponseCreateRequest
) -> tuple[ResponseRun, ChatStream]:
    """Start generating; an unknown model, a missing previous response or a prompt over the context
    fails here, as a plain 4xx, and so does a remote engine that refuses or cannot be reached (its
    `EngineError`). A remote engine's model (`ENGINE/MODEL`) runs as a chat completion there."""
    run = ResponseRun(req, store)
    chat = run.chat_request()
    stream: ChatStream
    if await service.remote.find(req.model) is not None:
        stream = await open_remote_chat(service.remote, chat, stream=req.stream)
    else:
        stream = await openai.open_chat(service, chat)
    run.model = stream.model_id
    return run, stream


async def collect_response(run: ResponseRun, stream: ChatStream) -> dict[str, Any]:
    """The whole response object (`stream: false`)."""
    text = "".join([piece async for piece in stream.pieces()])
    item_status = "incomplete" if stream.finish_reason == "length" else "completed"
    if text or not stream.tool_calls:
        run.output.append(_message(text, item_status))
    run.output.extend(_function_call(call) for call in stream.tool_calls)
    if not stream.cancelled:
        run.finish(stream)
    return run.response()


async def response_events(run: ResponseRun, stream: ChatStream) -> AsyncGenerator[list[Item], None]:
    """The typed events of a streamed response, in OpenAI's order; each list goes out in one write."""
    events = _Events(run)
    yield [events.lifecycle("response.created"), events.lifecycle("response.in_progress")]
    pieces = stream.pieces()
    try:
        async for piece in pieces:
            yield events.text(piece)
    except FoundryError as exc:
        if stream.cancelled:
            raise
        closing = events.close_message("incomplete")
        run.fail(exc)
        yield [
            *closing,
            events.event("error", code=exc.code, message=exc.message, param=exc.param),
            events.lifecycle("response.failed"),
        ]
        return
    finally:
        await pieces.aclose()  # a client that left closes the generation now, not at collection
    if stream.cancelled:
        return
    closing = []
    if not stream.tool_calls:
        closing += events.open_message()  # an empty answer is still a message
    closing += events.close_message("incomplete" if stream.finish_reason == "length" else "completed")
    for call in stream.tool_calls:
        closing += events.function_call(call)
    run.finish(stream)
    closing.append(
        events.lifecycle("response.incomplete" if run.status == "incomplete" else "response.completed")
    )
    yield closing


class _Events:
    """Builds one streamed response's events, numbering them, and its output items as they form."""

    def __init__(self, run: ResponseRun) -> None:
        self.run = run
        self.sequence = 0
        self.message: Item | None = None
        self.message_index = 0
        self.text_so_far = ""

    def event(self, kind: str, **fields: Any) -> Item:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence - 1, **fields}

    def lifecycle(self, kind: str) -> Item:
        return self.event(kind, response=self.run.response())

    def _where(self) -> dict[str, Any]:
        assert self.message is not None
        return {"item_id": self.message["id"], "output_index": self.message_index, "content_index": 0}

    def open_message(self) -> list[Item]:
        """The answer's message item and its text part, once (before its first text)."""
        if self.message is not None:
            return []
        self.message = {**_message("", "in_progress"), "content": []}
        self.message_index = len(self.run.output)
        self.run.output.append(self.message)
        return [
            self.event(
                "response.output_item.added", output_index=self.message_index, item=_copy(self.message)
            ),
            self.event("response.content_part.added", **self._where(), part=_text_part("output_text", "")),
        ]

    def text(self, piece: str) -> list[Item]:
        batch = self.open_message()
        self.text_so_far += piece
        batch.append(self.event("response.output_text.delta", **self._where(), delta=piece, logprobs=[]))
        return batch

    def close_message(self, status: str) -> list[Item]:
        if self.message is None:
            return []
        part = _text_part("output_text", self.text_so_far)
        self.message.update(status=status, content=[part])
        return [
            self.event("response.output_text.done", **self._where(), text=self.text_so_far, logprobs=[]),
            self.event("response.content_part.done", **self._where(), part=_copy(part)),
            self.event(
                "response.output_item.done", output_index=self.message_index, item=_copy(self.message)
            ),
        ]

    def function_call(self, call: ToolCall) -> list[Item]:
        """A call's events. The engine knows a call once it is whole: its arguments come in one delta."""
        item = _function_call(call)
        index = len(self.run.output)
        self.run.output.append(item)
        where = {"item_id": item["id"], "output_index": index}
        opening = {**item, "arguments": "", "status": "in_progress"}
        return [
            self.event("response.output_item.added", output_index=index, item=opening),
            self.event("response.function_call_arguments.delta", **where, delta=call.arguments),
            self.event(
                "response.function_call_arguments.done", **where, name=call.name, arguments=call.arguments
            ),
            self.event("response.output_item.done", output_index=index, item=_copy(item)),
        ]


def _copy(item: Item) -> Item:
    """A snapshot of an item as it is now (later events change the item itself)."""
    return {k: [dict(p) for p in v] if k == "content" else v for k, v in item.items()}


# ---- retrieve, delete, input items ------------------------------------------------------------
def get_response(store: ResponseStore, response_id: str) -> dict[str, Any]:
    return store.get(response_id).response


def delete_response(store: ResponseStore, response_id: str) -> dict[str, Any]:
    store.delete(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


def list_input_items(
    store: ResponseStore, response_id: str, *, limit: int = 20, after: str | None = None, order: str = "desc"
) -> dict[str, Any]:
    """`GET v1/responses/{id}/input_items`: OpenAI's cursor list, newest first unless `order=asc`."""
    items = list(store.get(response_id).input_items)
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(
                f"No input item with id '{after}' in response '{response_id}'.", param="after"
            )
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
