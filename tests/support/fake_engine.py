"""Small HTTP fakes on 127.0.0.1 that stand in for a remote OpenAI-compatible engine.

class Engine(JsonHandler):
    def do_GET(self) -> None:
        self.send_json(200, {"object": "list", "data": [{"id": "m1"}]})

with serve(Engine) as url:
    ...  # url is "http://127.0.0.1:PORT"

A fake that must stream on the test's own event loop (to wait on events the server's requests set) is a
tornado application instead, its chat handler a `ChatStreamHandler`:
`with serve_tornado(jp_asyncio_loop, handlers) as port: ...`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tornado import httpserver, web
from tornado.netutil import bind_sockets


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler with JSON bodies both ways and server-sent events; it logs nothing."""

    protocol_version = "HTTP/1.1"

    def read_json(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def send_json(self, status: int, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_events(self, events: Iterable[object]) -> None:
        """Each event as a `data:` line, then `data: [DONE]`; the stream ends with the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        text = "".join(f"data: {json.dumps(event)}\n\n" for event in events)
        self.wfile.write(f"{text}data: [DONE]\n\n".encode())
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serves `handler` on a free loopback port; yields the base URL, without a trailing slash."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class ChatStreamHandler(web.RequestHandler):
    """A tornado request handler that streams chat completion chunks as server-sent events."""

    async def send_event(self, data: object) -> None:
        self.write(f"data: {json.dumps(data)}\n\n")
        await self.flush()

    async def end_chat_stream(self, body: dict[str, Any], finish: str, usage: dict[str, Any]) -> None:
        """The chunk with the finish reason, the usage chunk when `body` asked for it, then `[DONE]`."""
        model = body["model"]
        await self.send_event(chat_chunk(model, {}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            await self.send_event({**chat_chunk(model, {}), "choices": [], "usage": usage})
        self.write("data: [DONE]\n\n")
        self.finish()


@contextmanager
def serve_tornado(loop: asyncio.AbstractEventLoop, handlers: list[tuple]) -> Iterator[int]:
    """Serves a tornado application of `handlers` on a free loopback port, on `loop`; yields the port."""
    sockets = bind_sockets(0, "127.0.0.1")

    async def start() -> httpserver.HTTPServer:
        server = httpserver.HTTPServer(web.Application(handlers))
        server.add_sockets(sockets)
        return server

    server = loop.run_until_complete(start())
    try:
        yield sockets[0].getsockname()[1]
    finally:
        server.stop()
        loop.run_until_complete(server.close_all_connections())


def closed_port() -> int:
    """A loopback port nothing listens on: an engine that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chat_chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One streamed chat completion chunk, as an OpenAI-compatible engine sends it."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
