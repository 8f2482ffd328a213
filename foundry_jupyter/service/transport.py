"""How the server and a runner reach each other: a unix socket, or loopback TCP with a secret.

A unix socket lives in a folder only its user can open (`tempfile.mkdtemp` makes it 0700), so the
file system keeps other local users out. Loopback TCP has no such owner: any local process can connect
to 127.0.0.1, so every TCP connection first presents the runner's secret (`handshake`), which the
server generates per runner and passes in the runner's environment (never on its command line, which
every local user can read in the process list). The runner closes a connection whose first bytes are
not that secret before it reads any request.

The unix socket is the default where the platform has one; Windows gets TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from ..config import ENV_RUNNER_TRANSPORT
from ..errors import InvalidRequest

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Kind = Literal["unix", "tcp"]

TRANSPORTS = ("auto", "unix", "tcp")
HOST = "127.0.0.1"
SECRET_ENV = "FOUNDRY_JUPYTER_RUNNER_SECRET"  # the runner reads and removes it at start
AUTH_PREFIX = b"foundry-runner-auth "
SECRET_HEX_CHARS = 64  # 32 random bytes
HANDSHAKE_TIMEOUT_S = 5.0  # a connection that presents nothing is dropped after this


def unix_sockets_available() -> bool:
    """Whether this platform's asyncio serves unix sockets (not Windows, whose `socket` module may
    define AF_UNIX while asyncio's event loops there cannot serve it)."""
    return sys.platform != "win32" and hasattr(socket, "AF_UNIX")


def choose(setting: str | None = None) -> Kind:
    """The transport `setting` ("auto", "unix", "tcp"; None reads $FOUNDRY_JUPYTER_RUNNER_TRANSPORT)
    stands for on this platform: "auto" is the unix socket where there is one, else TCP."""
    value = (setting if setting is not None else os.environ.get(ENV_RUNNER_TRANSPORT, "")) or "auto"
    value = value.strip().lower()
    if value not in TRANSPORTS:
        raise InvalidRequest(f"unknown runner transport {value!r}; use one of {', '.join(TRANSPORTS)}")
    if value == "unix" and not unix_sockets_available():
        raise InvalidRequest("unix sockets are not available on this platform; use the tcp transport")
    if value == "auto":
        return "unix" if unix_sockets_available() else "tcp"
    return "tcp" if value == "tcp" else "unix"


def new_secret() -> str:
    return secrets.token_hex(SECRET_HEX_CHARS // 2)


def handshake(secret: str) -> bytes:
    """What a client sends first on a TCP connection: fixed length, so the runner reads exactly it."""
    return AUTH_PREFIX + secret.encode("ascii") + b"\n"


@dataclass(frozen=True)
class Address:
    """Where a runner listens: a unix socket `path`, or `port` on 127.0.0.1 guarded by `secret`."""

    kind: Kind
    path: str = ""
    port: int = 0
    secret: str = ""

    async def connect(self, limit: int = 2**16) -> Streams:
        """A fresh connection, authenticated; raises OSError when nothing listens."""
        if self.kind == "unix":
            return await asyncio.open_unix_connection(self.path, limit=limit)
        reader, writer = await asyncio.open_connection(HOST, self.port, limit=limit)
        writer.write(handshake(self.secret))  # goes out with the first request
        return reader, writer


def write_port_file(path: str, port: int) -> None:
    """Tell the server where the runner listens: written whole, then renamed, so a reader never
    sees half of it."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"host": HOST, "port": port}, f)
    os.replace(tmp, path)


def read_port_file(path: str) -> int | None:
    """The port a runner wrote to `path`; None while it has not written it."""
    try:
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def serve_unix(handler: Handler, path: str, limit: int) -> asyncio.Server:
    return await asyncio.start_unix_server(handler, path=path, limit=limit)


async def serve_tcp(handler: Handler, secret: str, limit: int) -> tuple[asyncio.Server, int]:
    """Listen on 127.0.0.1 on a free port; `handler` sees only connections that presented `secret`.
    Returns the server and its port."""
    if len(secret) != SECRET_HEX_CHARS:
        raise ValueError(f"the runner secret must be {SECRET_HEX_CHARS} hex characters")
    expected = handshake(secret)

    async def authenticated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            presented = await asyncio.wait_for(reader.readexactly(len(expected)), HANDSHAKE_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            presented = b""
        if not hmac.compare_digest(presented, expected):
            with contextlib.suppress(OSError):
                writer.close()
            return
        await handler(reader, writer)

    server = await asyncio.start_server(authenticated, host=HOST, port=0, limit=limit)
    port = int(server.sockets[0].getsockname()[1])
    return server, port
