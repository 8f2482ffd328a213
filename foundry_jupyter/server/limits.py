"""Limits on what one connection may hold: time to send headers and bodies, and body size.

Answering a body that is too large before reading it, as nginx does with `client_max_body_size`.

Tornado closes the connection as soon as a handler answers without reading the body, and a client
that is still sending (httpx, the OpenAI SDK: they read only after sending) then sees a reset instead
of the answer. So the 413 is written on the detached stream, and what the client goes on sending is
read and dropped, for a bounded time (nginx's lingering close), before the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from tornado.iostream import IOStream, StreamClosedError

LINGER_S = 30.0  # nginx's lingering_time
LINGER_IDLE_S = 5.0  # nginx's lingering_timeout
_draining: set[asyncio.Task[None]] = set()


def answer_and_drain(stream: IOStream, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    """Write a complete `status` answer with a JSON `body` on `stream`, then drop what the client still
    sends (up to `LINGER_S`) and close."""
    payload = json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} Content Too Large", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head += [f"Content-Length: {len(payload)}", "Connection: close"]
    with contextlib.suppress(StreamClosedError):
        stream.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    task = asyncio.get_running_loop().create_task(_drain(stream))
    _draining.add(task)
    task.add_done_callback(_draining.discard)


async def _drain(stream: IOStream) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_S
    try:
        while loop.time() < deadline:
            await asyncio.wait_for(stream.read_bytes(256 * 1024, partial=True), LINGER_IDLE_S)
    except (TimeoutError, StreamClosedError, OSError):
        pass
    finally:
        stream.close()


def apply_connection_timeouts(serverapp: Any, *, header_timeout_s: float, body_timeout_s: float) -> None:
    """Set the Jupyter server's header and body timeouts (tornado reads them for every new request, so
    setting them once the server exists covers every connection from then on)."""
    try:
        params = serverapp.http_server.conn_params
    except Exception:  # no HTTP server of its own (embedded, or a test harness's server)
        logging.getLogger("foundry_jupyter.server").debug("no HTTP server to set timeouts on")
        return
    if header_timeout_s > 0:
        params.header_timeout = header_timeout_s
    params.body_timeout = body_timeout_s if body_timeout_s > 0 else None
