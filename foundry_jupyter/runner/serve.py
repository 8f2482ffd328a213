"""The runner's socket server: one loaded `ChatModel`, many requests at once.

A connection carries one request after another (protocol in `foundry_jupyter.service.wire`).
Generation runs in worker threads (the model batches concurrent requests); deltas go back to the
client as they are made. A connection closed by the client sets its running request's cancel event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import FoundryError, InvalidRequest, RunnerFailed
from ..service import transport, wire

if sys.platform != "win32":  # POSIX only: how much a socket's reader has not read yet (`_unread`)
    import fcntl
    import termios

log = logging.getLogger("foundry_jupyter.runner")

# At most one text message per this interval: each message costs a wake-up and CPU in the runner, the
# server and the client, so a fast model sends several tokens a message, while a model slower than this
# sends every token as it comes. The first token always goes out at once. A 60 Hz screen's frame: on a
# machine whose cores all run the model, that CPU is taken from the model's own threads.
MIN_SEND_INTERVAL_S = 1 / 60


class RunnerServer:
    def __init__(self, model: Any, *, max_workers: int = 64) -> None:
        self.model = model
        self.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="generate")
        self.cancels: set[threading.Event] = set()
        self.outs: set[BlockingOut] = set()
        self.completed = 0  # generations that ended by themselves (stop, length or tool calls)
        self.cancelled = 0  # generations stopped because their client left
        self.connections = 0  # accepted so far (the server reuses them)
        self.stopping = False  # told to stop (the model is being unloaded)

    async def serve(
        self,
        socket_path: str | None,
        *,
        port_file: str | None = None,
        secret: str = "",
    ) -> None:
        """Serve on the unix socket `socket_path`, or (`port_file`) on loopback TCP for clients that
        present `secret`, until SIGTERM (which the runner also sends itself when its parent is gone:
        `parent.watch_parent`)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        if sys.platform != "win32":
            # Windows has no signal handlers on the event loop; there the server stops a runner with
            # TerminateProcess, which runs no handler anyway.
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        if port_file:
            server, port = await transport.serve_tcp(self._handle, secret, wire.LINE_LIMIT)
            transport.write_port_file(port_file, port)
        else:
            assert socket_path, "a socket path or a port file"
            server = await transport.serve_unix(self._handle, socket_path, wire.LINE_LIMIT)
        try:
            await stop.wait()
        finally:
            self.stopping = True
            server.close()
            for cancel in list(self.cancels):
                cancel.set()
            for out in list(self.outs):
                out.abort()
            self.executor.shutdown(wait=True, cancel_futures=True)
            with contextlib.suppress(OSError):
                os.unlink(port_file or socket_path or "")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests on one connection, one after another: the server keeps connections open between
        requests, so a request does not pay for a new connection in its time to first token."""
        self.connections += 1
        pending = b""
        try:
            while True:
                line = pending if pending.endswith(b"\n") else pending + await reader.readline()
                if not line.endswith(b"\n"):
                    return  # the server closed the connection
                pending = await self._answer(wire.decode(line), reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client left
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _answer(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        """Answer one request; returns what the server sent meanwhile (the start of its next request)."""
        try:
            op = request.get("op")
            _check_capability(self.model, op)
            if op == "info":
                await _send(writer, {"result": self._info()})
            elif op == "count":
                loop = asyncio.get_running_loop()
                messages = request.get("messages") or []
                count = await loop.run_in_executor(self.executor, self.model.count_tokens, messages)
                await _send(writer, {"result": {"tokens": int(count)}})
            elif op in ("chat", "text"):
                return await self._generate(op, request, reader, writer)
            elif op == "embed":
                await _send(writer, {"result": await self._embed(request)})
            else:
                raise InvalidRequest(f"unknown runner operation {op!r}")
        except FoundryError as exc:
            await _send(writer, {"error": wire.error_to_wire(exc)})
        except (ConnectionError, asyncio.IncompleteReadError):
            raise
        except Exception as exc:
            failure: BaseException = exc
            if self.stopping:  # a request that came in as the model was being unloaded
                failure = RunnerFailed("The model was unloaded as this request came.", code="model_unloaded")
            else:
                log.exception("request failed")
            await _send(writer, {"error": wire.error_to_wire(failure)})
        return b""

    async def _embed(self, request: dict[str, Any]) -> dict[str, Any]:
        """Vectors for `input` (texts or token arrays); concurrent requests share the model's runs."""
        loop = asyncio.get_running_loop()
        inputs = request.get("input") or []
        dimensions = request.get("dimensions")

        def work() -> tuple[Any, int]:
            return self.model.embed(inputs, dimensions=dimensions)

        vectors, tokens = await loop.run_in_executor(self.executor, work)
        return {**wire.vectors_to_wire(vectors), "tokens": int(tokens)}

    def _info(self) -> dict[str, Any]:
        return {
            "model_id": self.model.model_id,
            "execution_provider": self.model.execution_provider,
            "context_length": self.model.context_length,
            "fim": bool(getattr(self.model, "fills_middle", False)),
            "pid": os.getpid(),
            "processes": processes_worth_running(self.model),
            "active": len(self.cancels),
            "completed": self.completed,
            "cancelled": self.cancelled,
            "connections": self.connections,
        }

    async def _generate(
        self, op: str, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        loop = asyncio.get_running_loop()
        params = wire.params_from_wire(request.get("params") or {})
        cancel = threading.Event()
        out = BlockingOut(writer.get_extra_info("socket"))

        def work() -> None:
            finished = False
            deltas: Any = None
            try:
                if op == "chat":
                    deltas = self.model.stream_chat(request.get("messages") or [], params, cancel=cancel)
                else:
                    prompt, suffix = str(request.get("prompt", "")), str(request.get("suffix") or "")
                    deltas = self.model.stream_text(prompt, params, cancel=cancel, suffix=suffix)
                # On a cancel the model stops at its next token and ends the stream itself, which keeps
                # its state for a request that extends this prompt (the next keystroke's, say).
                for delta in deltas:
                    if cancel.is_set():
                        continue
                    finished = finished or delta.finish_reason in ("stop", "length", "tool_calls")
                    try:
                        out.send(_delta_message(delta))
                    except OSError:
                        cancel.set()  # the client left mid-answer
            except BaseException as exc:
                if not isinstance(exc, FoundryError):
                    log.error("generation failed", exc_info=exc)
                with contextlib.suppress(OSError):
                    out.send({"error": wire.error_to_wire(exc)})  # after any text made before it
            finally:
                # Closed here, not when dropped: a stream can sit in a reference cycle until the garbage
                # collector runs, and until it is closed the engine goes on generating for nobody
                # (50 clients leaving at once kept a core busy for 10-25 s).
                close = getattr(deltas, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        close()
                loop.call_soon_threadsafe(self._count, finished, cancel.is_set())

        self.cancels.add(cancel)
        self.outs.add(out)
        watcher = asyncio.create_task(_watch_connection(reader, cancel))
        try:
            await loop.run_in_executor(self.executor, work)
        finally:
            cancel.set()
            watcher.cancel()
            self.cancels.discard(cancel)
            self.outs.discard(out)
            out.close()
        try:
            sent_meanwhile = await watcher
        except asyncio.CancelledError:
            return b""
        if not sent_meanwhile:
            raise ConnectionError("the server closed the connection")
        return sent_meanwhile

    def _count(self, finished: bool, cancelled: bool) -> None:
        if finished:
            self.completed += 1
        elif cancelled:
            self.cancelled += 1


class BlockingOut:
    """The worker thread's own blocking handle on a connection's socket.

    Deltas go straight from the generating thread to the socket: handing each token to the event loop
    would cost a thread wake-up and a GIL hand-over per token. While the reader has not yet taken what
    was sent, new text waits and goes out merged with the next delta, so a reader that falls behind gets
    fewer, larger messages instead of a backlog.
    """

    def __init__(self, connection: Any, min_interval_s: float = MIN_SEND_INTERVAL_S) -> None:
        """`connection`: the socket the event loop reads from (a `socket.socket` or asyncio's view of one)."""
        self._sock = connection.dup()  # a socket handle, not a file descriptor, on Windows
        self._sock.setblocking(True)
        self._held: list[str] = []
        self._held_reasoning: list[str] = []  # a reasoning model's thinking, beside the answer text
        self._min_interval_s = min_interval_s
        self._last_sent = -math.inf

    def send(self, message: dict[str, Any]) -> None:
        """Send `message`. Text that does not end the answer is held while the reader is behind or
        the last message left less than `min_interval_s` ago, and goes out with the next delta after
        that; anything else first sends what is held."""
        if "t" in message:
            self._held.append(message["t"])
            self._held_reasoning.append(message.get("r", ""))
            if "done" not in message and self._should_hold():
                return
            message = {**message, **self._held_text()}
        elif self._held:
            self._sock.sendall(wire.encode(self._held_text()))
        self._held, self._held_reasoning = [], []
        self._sock.sendall(wire.encode(message))
        self._last_sent = time.monotonic()

    def _held_text(self) -> dict[str, str]:
        reasoning = "".join(self._held_reasoning)
        return {"t": "".join(self._held), **({"r": reasoning} if reasoning else {})}

    def _should_hold(self) -> bool:
        return time.monotonic() - self._last_sent < self._min_interval_s or _unread(self._sock) > 0

    def abort(self) -> None:
        """Wake a send blocked on a client that stopped reading (at shutdown)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._sock.close()


def _check_capability(model: Any, op: Any) -> None:
    """An embedding model answers `embed` (and `info`), a chat model everything else."""
    embedder = hasattr(model, "embed")
    if embedder and op in ("chat", "text", "count"):
        raise InvalidRequest(
            f"'{model.model_id}' is an embedding model: it answers POST v1/embeddings only", param="model"
        )
    if not embedder and op == "embed":
        raise InvalidRequest(
            f"'{model.model_id}' is not an embedding model: it cannot answer v1/embeddings", param="model"
        )


def processes_worth_running(model: Any) -> int:
    """How many processes of this model the machine's cores can run side by side: more than one when
    its operators use fewer threads than there are cores.

    onnxruntime-genai holds the GIL while it makes a token, so threads in one process never make tokens
    in parallel; only another process can use the cores such a model leaves idle.
    """
    threads = model.cpu_threads
    if not threads or model.execution_provider != "cpu":
        return 1
    from ..engine.hardware import cpu_threads

    return max(1, cpu_threads() // threads)


def _unread(sock: socket.socket) -> int:
    """Bytes this socket sent that its reader has not read yet, as far as the OS tells (Linux: exactly
    for a unix socket; for loopback TCP only what the reader's receive buffer could not take yet).
    0 where it cannot tell: then only `MIN_SEND_INTERVAL_S` merges text."""
    if sys.platform == "win32" or not hasattr(termios, "TIOCOUTQ"):
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def _delta_message(delta: Any) -> dict[str, Any]:
    text = {"t": delta.text, **({"r": delta.reasoning} if delta.reasoning else {})}
    if delta.finish_reason is None:
        return text
    done = {"finish_reason": delta.finish_reason, "usage": wire.usage_to_wire(delta.usage)}
    if delta.tool_calls:
        done["tool_calls"] = wire.tool_calls_to_wire(delta.tool_calls)
    return {**text, "done": done}


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(wire.encode(message))
    await writer.drain()


async def _watch_connection(reader: asyncio.StreamReader, cancel: threading.Event) -> bytes:
    """While a request runs: the connection closing cancels it. The server sends nothing else before
    the answer ends, so whatever arrives is the start of its next request, returned to be read as such."""
    try:
        data = await reader.read(wire.LINE_LIMIT)
    except (ConnectionError, asyncio.IncompleteReadError):
        data = b""
    if not data:
        cancel.set()
    return data
