"""A minimal asyncio HTTP/1.1 client for streaming benchmarks.

httpx spent about 0.3 ms of client CPU per streamed token here, enough to saturate a core against the
tiny model and hide the servers' differences; this one reads chunked bodies with asyncio streams and
costs a fraction of that. Loopback only, no TLS, no redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit


class HTTPError(RuntimeError):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300].decode(errors='replace')}")
        self.status = status


class Connection:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(
        self, base_url: str, headers: dict[str, str] | None = None, timeout_s: float = 120.0
    ) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.headers = headers or {}
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def _quickack(self) -> None:
        # The peer's server (oatpp) leaves Nagle on: on a reused connection its first chunk waited for our
        # delayed ACK (~40 ms). Quick ACKs keep that TCP artefact out of every system's figures.
        sock = self._writer.get_extra_info("socket") if self._writer is not None else None
        if sock is not None and hasattr(socket, "TCP_QUICKACK"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    async def _open(self) -> None:
        if self._writer is None:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout_s
            )

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def stream(self, method: str, path: str, body: Any = None) -> AsyncIterator[bytes]:
        """Send a request and yield the response body in the pieces the server sent."""
        await self._open()
        assert self._reader is not None and self._writer is not None
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Accept: */*"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
        self._quickack()
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await self._writer.drain()
        reader = self._reader
        status_line = await asyncio.wait_for(reader.readline(), self.timeout_s)
        if not status_line:
            await self.close()
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), self.timeout_s)
            self._quickack()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers.setdefault(key.strip().lower(), value.strip().lower())
        keep_alive = "close" not in headers.get("connection", "")
        if status != 200:
            data = b"".join([piece async for piece in self._body(headers)])
            await self.close()
            raise HTTPError(status, data)
        async for piece in self._body(headers):
            yield piece
        if not keep_alive or (
            "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "")
        ):
            await self.close()

    async def _body(self, headers: dict[str, str]) -> AsyncIterator[bytes]:
        reader = self._reader
        assert reader is not None
        if "chunked" in headers.get("transfer-encoding", ""):
            async for data in self._chunked(reader):
                yield data
        elif "content-length" in headers:
            yield await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), self.timeout_s)
        else:
            while data := await asyncio.wait_for(reader.read(65536), self.timeout_s):
                yield data

    async def _chunked(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        """A chunked body's data, what each read brought in one piece: one wake-up per read, not two
        awaits (each a task of `wait_for`) per chunk. On a 2-core machine the client's CPU is taken
        from the server it measures."""
        buffer = bytearray()
        while True:
            async with asyncio.timeout(self.timeout_s):
                data = await reader.read(65536)
            if not data:
                raise ConnectionError("server closed the connection mid-response")
            self._quickack()
            buffer += data
            pieces = []
            start = 0
            while (eol := buffer.find(b"\r\n", start)) >= 0:
                size = int(bytes(buffer[start:eol]).split(b";")[0].strip() or b"0", 16)
                end = eol + 2 + size + 2  # the chunk's data and its CRLF; the last chunk's blank line
                if len(buffer) < end:
                    break
                if size == 0:  # no trailers are sent
                    if pieces:
                        yield b"".join(pieces)
                    return
                pieces.append(bytes(buffer[eol + 2 : end - 2]))
                start = end
            del buffer[:start]
            if pieces:
                yield b"".join(pieces)

    async def get_json(self, path: str) -> Any:
        return json.loads(b"".join([piece async for piece in self.stream("GET", path)]))
