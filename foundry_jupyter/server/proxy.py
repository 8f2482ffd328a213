"""Requests for a remote engine's model (`ENGINE/MODEL`): chat, completions and embeddings, proxied by
`service.remote`.

The body goes to the engine as the caller sent it (only `model` renamed, our `ttl`/`ep` dropped): the
engine validates what it accepts. Errors that arrive before the answer starts get their own status and
headers (an engine's `Retry-After`); errors mid-stream become the stream's last event, as for local
models.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import FoundryError, InvalidRequest
from ..service.remote import EngineError
from .base import FoundryHandler


def is_remote(handler: FoundryHandler, body: Any) -> bool:
    return isinstance(body, dict) and handler.service.remote.split(body.get("model")) is not None


async def send_proxied(handler: FoundryHandler, path: str, body: dict[str, Any]) -> None:
    """Answer `body` (a request for `v1/{path}`) with the engine's answer, streamed when asked."""
    handler.model_name(body["model"])
    if not isinstance(body.get("stream", False), bool):
        raise InvalidRequest("`stream` must be true or false.", param="stream")
    try:
        call = await handler.service.remote.open(path, body)
    except EngineError as exc:
        send_error(handler, exc)
        return
    handler.cancel_on_close(call)
    if body.get("stream"):
        await handler.send_events(call.events())
        return
    try:
        answer = await call.json()
    except FoundryError as exc:
        if call.cancelled:
            return
        send_error(handler, exc)
        return
    if not call.cancelled:
        handler.send_json(answer)


def send_error(handler: FoundryHandler, exc: FoundryError) -> None:
    """An error answer with the status and headers (an engine's `Retry-After`) the error carries."""
    handler.log.info(
        "request %s: %s %s -> %s %s",
        handler.request_id,
        handler.request.method,
        handler.request.path,
        exc.status,
        exc.message,
    )
    handler.set_status(exc.status)
    for name, value in getattr(exc, "headers", {}).items():
        handler.set_header(name, value)
    handler.finish(json.dumps(exc.to_dict()))
