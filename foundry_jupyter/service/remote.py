"""Remote engines in the service: their model lists (cached, refreshed, with a timeout) and the proxy
that streams chat and text completions (and passes embeddings) to them.

The runner client's counterpart over HTTP: a request for `ENGINE/MODEL` goes to the engine's
`/v1/...` with the model renamed, and its answer comes back event by event, as the engine sends it,
with `model` named as the caller named it. What can fail is mapped onto OpenAI-shaped errors naming the
engine: unreachable -> 503 `engine_unavailable`, no first byte in time -> 504 `engine_timeout`, its 5xx
or an answer that is not JSON -> 502, its 4xx passed on (a refused key is 502 `engine_auth_failed`:
the caller's own token was fine). Requests are retried only while nothing has come back. The caller's
credentials are never forwarded; the engine's key goes only to the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from ..errors import Cancelled, FoundryError, InvalidRequest, ModelNotFound
from ..models import view
from ..models.engines import (
    EngineConfig,
    EngineFile,
    EngineListing,
    RemoteModel,
    alias_conflict,
    check_new_aliases,
    describe_failure,
    find_model,
    listing_from_answer,
    listing_from_response,
    merge_engines,
    parse_engine,
    plain_config_keys,
    public_url,
)

log = logging.getLogger("foundry_jupyter.service.remote")

# Failures before any answer: a refused connection, or a kept-alive one the engine closed or reset as the
# request went out.
_NOTHING_CAME_BACK = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)

T = TypeVar("T")
DOWN_RECHECK_S = 10.0  # an engine that did not answer is asked again this soon, whatever refresh_s says
MAX_ERROR_BODY = 64 * 1024
DROPPED_FIELDS = ("ttl", "ep")  # ours, not OpenAI's: an engine may refuse fields it does not know


class EngineError(FoundryError):
    """A failure of a remote engine, with the headers its answer needs (Retry-After)."""

    type = "api_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers = headers or {}


class RemoteEngines:
    """The engines this service knows: configured (`c.FoundryApp.remote_engines`), saved in the
    engines file (re-read when it changes, so `jupyter foundry engine add` reaches a running server),
    and registered through `POST openai/register`."""

    def __init__(
        self,
        configured: Sequence[Any] = (),
        file: EngineFile | None = None,
        is_local: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._configured = _valid_engines(configured)
        self._file = file
        self._is_local = is_local  # whether a local model answers to a name (engine aliases must not clash)
        self._file_mtime: float | None = None
        self._saved: list[EngineConfig] = []
        self._keys: dict[str, str] = {}  # keys given in register bodies, in memory only
        self._listings: dict[str, EngineListing] = {}
        self._refreshing: dict[str, asyncio.Lock] = {}
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._in_flight: dict[str, int] = {}
        self._closing: set[asyncio.Future[None]] = set()

    # ---- which engines ----------------------------------------------------------------------
    def engines(self) -> list[EngineConfig]:
        if self._file is not None:
            mtime = self._file.mtime()
            if mtime != self._file_mtime:
                try:
                    self._saved = self._file.load()
                except FoundryError as exc:
                    log.warning("remote engines: %s", exc.message)
                    self._saved = []
                self._file_mtime = mtime
        engines = merge_engines(self._configured, self._saved)
        return [
            e.model_copy(update={"api_key": SecretStr(self._keys[e.name.lower()])})
            if e.name.lower() in self._keys and not e.api_key
            else e
            for e in engines
        ]

    def get(self, name: str) -> EngineConfig:
        for engine in self.engines():
            if engine.name.lower() == name.lower():
                return engine
        raise ModelNotFound(f"No remote engine named {name!r}.", param="engine", code="engine_not_found")

    def split(self, name: str | None) -> RemoteModel | None:
        """(engine, the engine's model id, alias) when `name` is `ENGINE/MODEL` for a known engine or
        an engine's alias. No clash check: `find` is the one that decides."""
        return find_model(name, self.engines())

    async def find(self, name: str | None) -> RemoteModel | None:
        """As `split`, but an engine alias a local model also answers to is a 409 `alias_conflict`:
        neither side silently wins."""
        hit = self.split(name)
        if hit is not None and hit.alias and await self._local(hit.alias):
            raise alias_conflict(hit.alias, hit.engine.name, "a local model")
        return hit

    async def _local(self, name: str) -> bool:
        return self._is_local is not None and await self._is_local(name)

    async def register(self, body: Any) -> dict[str, Any]:
        """`POST openai/register`: Foundry's `{TypeName, ModelName, BaseUri}` or an engine object.
        Saved to the engines file without its key; a key in the body is kept in memory only."""
        engine = parse_engine(body, source="register", strict=True)
        local = {alias: await self._local(alias) for alias in engine.aliases}
        check_new_aliases(engine, self.engines(), local.__getitem__)
        if any(e.name.lower() == engine.name.lower() for e in self._configured):
            raise InvalidRequest(
                f"Engine {engine.name!r} is set in the Jupyter config (FoundryApp.remote_engines); "
                "change it there.",
                param="name",
                code="engine_configured",
            )
        if self._file is None:
            raise InvalidRequest("This service has no engines file to save a registration in.")
        if (key := engine.key({})) is not None:  # the body's own key, not one from the environment
            self._keys[engine.name.lower()] = key
        else:
            self._keys.pop(engine.name.lower(), None)
        self._file.add(engine)
        self._forget(engine.name)
        return {"status": "registered", "engine": view.engine_row(engine, EngineListing(engine.name))}

    def remove(self, name: str) -> dict[str, Any]:
        """`DELETE engines/{name}`: forget a saved engine. One set in the Jupyter config stays: the
        config is the administrator's, and the next start would bring it back."""
        if any(e.name.lower() == name.lower() for e in self._configured):
            raise InvalidRequest(
                f"Engine {name!r} is set in the Jupyter config (FoundryApp.remote_engines); "
                "remove it there and restart the server.",
                param="name",
                code="engine_configured",
            )
        if self._file is None or not any(e.name.lower() == name.lower() for e in self.engines()):
            raise ModelNotFound(f"No remote engine named {name!r}.", param="name", code="engine_not_found")
        removed = self._file.remove(name)
        self._keys.pop(removed.name.lower(), None)
        self._forget(removed.name)
        return {"status": "removed", "engine": removed.name}

    def _forget(self, name: str) -> None:
        self._listings.pop(name.lower(), None)
        client = self._clients.pop(name.lower(), None)
        if client is not None:
            self._closing.add(task := asyncio.ensure_future(client.aclose()))
            task.add_done_callback(self._closing.discard)

    # ---- model lists --------------------------------------------------------------------------
    async def listing(self, engine: EngineConfig, *, refresh: bool = False) -> EngineListing:
        """The engine's models and health, asked again when older than `refresh_s`."""
        key = engine.name.lower()
        lock = self._refreshing.setdefault(key, asyncio.Lock())
        async with lock:  # callers arriving together share one look
            cached = self._listings.get(key)
            max_age = engine.refresh_s if cached is None or cached.health == "ok" else DOWN_RECHECK_S
            if cached is not None and not refresh and cached.fresh(max_age):
                return cached
            listing = await self._fetch_listing(engine)
            self._listings[key] = listing
            return listing

    async def _fetch_listing(self, engine: EngineConfig) -> EngineListing:
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(
                self._client(engine).get(f"{engine.api_base}/models", headers=engine.headers()),
                engine.list_timeout,
            )
        except (httpx.HTTPError, TimeoutError) as exc:
            return listing_from_answer(engine, None, None, 0.0, error=describe_failure(engine, exc))
        return listing_from_response(engine, answer, started)

    async def listings(self) -> list[tuple[EngineConfig, EngineListing]]:
        engines = self.engines()
        found = await asyncio.gather(*(self.listing(e) for e in engines))
        return list(zip(engines, found, strict=True))

    async def catalog_rows(self) -> list[dict[str, Any]]:
        return [row for e, listing in await self.listings() for row in view.remote_catalog_rows(e, listing)]

    async def cache_rows(self) -> list[dict[str, Any]]:
        return [row for e, listing in await self.listings() for row in view.remote_cache_rows(e, listing)]

    async def model_objects(self, created: int) -> list[dict[str, Any]]:
        found = await self.listings()
        return [obj for e, listing in found for obj in view.remote_model_objects(e, listing, created)]

    async def engine_rows(self) -> list[dict[str, Any]]:
        return [view.engine_row(e, listing) for e, listing in await self.listings()]

    async def row(self, name: str) -> dict[str, Any] | None:
        """The catalog row `ENGINE/MODEL` (or an engine alias) stands for, None when `name` names no
        engine's model. A model the engine does not list still gets a row: the engine decides what it
        serves."""
        hit = await self.find(name)
        if hit is None:
            return None
        engine, model, _alias = hit
        listing = await self.listing(engine)
        known = next((m for m in listing.models if m.get("id") == model), {"id": model})
        shown = EngineListing(listing.engine, [known], listing.health, listing.latency_ms, listing.error)
        return view.remote_catalog_rows(engine, shown)[0]

    async def lifecycle_answer(self, name: str, action: str) -> dict[str, Any] | None:
        """Load, unload and TTL on a remote model: nothing to do, said plainly."""
        hit = await self.find(name)
        if hit is None:
            return None
        engine = hit.engine
        status = "remote" if action == "load" else "not_loaded"
        return {
            "status": status,
            "id": name,
            "executionProvider": view.DEVICE,
            "ttlSeconds": None,
            "engine": engine.name,
            "message": f"{name} is served by the remote engine '{engine.name}'; there is nothing to "
            f"{action} here (the engine keeps its models loaded).",
        }

    # ---- proxying -------------------------------------------------------------------------------
    def _client(self, engine: EngineConfig) -> httpx.AsyncClient:
        key = engine.name.lower()
        client = self._clients.get(key)
        if client is None:
            timeout = httpx.Timeout(None, connect=engine.connect_timeout)  # reads are timed per step
            limits = httpx.Limits(max_connections=engine.max_in_flight + 2)
            client = self._clients[key] = httpx.AsyncClient(timeout=timeout, limits=limits)
        return client

    async def open(self, path: str, body: dict[str, Any]) -> ProxyCall:
        """Send `body` (an OpenAI request naming `ENGINE/MODEL`) to the engine's `/v1/{path}`; returns
        once the engine's answer has started. Raises the engine's error when it answers one."""
        hit = await self.find(body.get("model"))
        if hit is None:
            raise ModelNotFound(f"{body.get('model')!r} names no remote engine.", param="model")
        engine, model, _alias = hit
        key = engine.name.lower()
        if self._in_flight.get(key, 0) >= engine.max_in_flight:
            raise EngineError(
                f"Engine '{engine.name}' already has {engine.max_in_flight} requests in flight "
                "(its max_in_flight); retry shortly.",
                status=429,
                code="engine_busy",
                headers={"Retry-After": "1"},
            )
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        call = ProxyCall(self, engine, str(body["model"]), _upstream_body(body, model))
        try:
            await call.start(path)
        except BaseException:
            await call.aclose()
            raise
        return call

    def _released(self, engine: EngineConfig) -> None:
        key = engine.name.lower()
        self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)

    def _mark_down(self, engine: EngineConfig, error: str) -> None:
        listing = self._listings.get(engine.name.lower())
        if listing is not None:
            listing.health, listing.error = "down", error

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()


class ProxyCall:
    """One request to an engine: started (its answer's status known), then read as events or JSON.
    `cancel()` (the client left) stops the reading and closes the upstream request."""

    def __init__(self, owner: RemoteEngines, engine: EngineConfig, name: str, body: dict[str, Any]) -> None:
        self._owner = owner
        self.engine = engine
        self.model_id = name  # as the caller named it: ENGINE/MODEL
        self._body = body
        self._response: httpx.Response | None = None
        self._stopped = asyncio.Event()
        self._closed = False
        self.cancelled = False

    async def start(self, path: str) -> None:
        engine = self.engine
        client = self._owner._client(engine)
        headers = {**engine.headers(), "Content-Type": "application/json"}
        if self._body.get("stream"):
            headers["Accept"] = "text/event-stream"
        content = json.dumps(self._body).encode()
        url = f"{engine.api_base}/{path}"
        for attempt in range(engine.retries + 1):
            request = client.build_request("POST", url, content=content, headers=headers)
            try:
                self._response = await self._within(
                    client.send(request, stream=True), engine.first_byte_timeout, "a first byte"
                )
                break
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.RemoteProtocolError,
                httpx.ReadError,
            ) as exc:
                # No answer was started, so another try is safe.
                if attempt < engine.retries:
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                message = describe_failure(engine, exc)
                self._owner._mark_down(engine, message)
                raise EngineError(
                    f"{message}. Is it running? `jupyter foundry engine list` shows every engine's health.",
                    status=503,
                    code="engine_unavailable",
                ) from None
            except httpx.HTTPError as exc:
                raise EngineError(describe_failure(engine, exc), status=502, code="engine_error") from None
        assert self._response is not None
        if self._response.status_code >= 400:
            raise await self._error_from_answer(self._response)

    async def events(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The engine's stream as OpenAI chunks, each yielded as soon as it arrives."""
        assert self._response is not None
        lines = self._response.aiter_lines()
        timeout, done = self.engine.first_byte_timeout, False
        try:
            while True:
                try:
                    line = await self._within(anext(lines), timeout, "the next event")
                except StopAsyncIteration:
                    break
                except (httpx.HTTPError, httpx.StreamError) as exc:
                    raise EngineError(
                        f"The stream from engine '{self.engine.name}' broke: {type(exc).__name__}.",
                        status=502,
                        code="engine_stream_broken",
                    ) from None
                timeout = self.engine.idle_timeout
                if not line.startswith("data:"):
                    continue  # blank separators, `: keep-alive` comments, `event:` names
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                yield [self._event(data)]
        finally:
            await self.aclose()
        if not done:
            raise EngineError(
                f"Engine '{self.engine.name}' closed the stream before it finished (no [DONE]).",
                status=502,
                code="engine_stream_broken",
            )

    async def json(self) -> dict[str, Any]:
        """The engine's whole (non-streamed) answer, with `model` as the caller named it."""
        assert self._response is not None
        try:
            raw = await self._within(
                self._response.aread(), self.engine.first_byte_timeout, "its whole answer"
            )
        except httpx.HTTPError as exc:
            raise EngineError(
                f"The answer of engine '{self.engine.name}' broke off: {type(exc).__name__}.",
                status=502,
                code="engine_stream_broken",
            ) from None
        finally:
            await self.aclose()
        answer = self._parse(raw.decode("utf-8", "replace"))
        if "model" in answer:
            answer["model"] = self.model_id
        return answer

    def _event(self, data: str) -> dict[str, Any]:
        event = self._parse(data)
        if isinstance(event.get("error"), dict):  # the engine failed mid-stream and said why
            error = event["error"]
            raise EngineError(
                f"Engine '{self.engine.name}': {error.get('message') or 'failed mid-stream'}",
                status=502,
                code=error.get("code") or "engine_error",
            )
        if "model" in event:
            event["model"] = self.model_id
        return event

    def _parse(self, text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise EngineError(
                f"Engine '{self.engine.name}' sent an answer that is not a JSON object: {text[:80]!r}",
                status=502,
                code="engine_bad_response",
            )
        return value

    async def _error_from_answer(self, response: httpx.Response) -> EngineError:
        engine, status = self.engine, response.status_code
        try:
            raw = await self._within(response.aread(), engine.idle_timeout, "its error body")
        except (FoundryError, httpx.HTTPError):
            raw = b""
        text = raw[:MAX_ERROR_BODY].decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, str):
            error = {"message": error}
        if not isinstance(error, dict):
            detail = body.get("detail") or body.get("message") if isinstance(body, dict) else None
            error = {"message": str(detail or text.strip()[:300] or response.reason_phrase)}
        message = f"Engine '{engine.name}' ({status}): {error.get('message') or response.reason_phrase}"
        headers = (
            {"Retry-After": response.headers["Retry-After"]} if "Retry-After" in response.headers else {}
        )
        if status in (401, 403):
            where = f"${engine.api_key_env}" if engine.api_key_env else "its configured api_key"
            return EngineError(
                f"{message}. The engine refused the API key from {where}; the engine's key is "
                "server configuration (`jupyter foundry engine add --api-key-env VAR`).",
                status=502,
                code="engine_auth_failed",
            )
        if status >= 500:
            return EngineError(message, status=502, code=error.get("code") or "engine_error")
        result = EngineError(message, status=status, code=error.get("code"), headers=headers)
        result.param = error.get("param")
        result.type = error.get("type") or ("rate_limit_error" if status == 429 else "invalid_request_error")
        if status == 429 and not result.code:
            result.code = "rate_limit_exceeded"
        return result

    async def _within(self, step: Awaitable[T], timeout: float, what: str) -> T:
        """`step`, unless the time runs out (504) or the call is cancelled first."""
        task = asyncio.ensure_future(step)
        stop = asyncio.ensure_future(self._stopped.wait())
        try:
            finished, _ = await asyncio.wait(
                {task, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
        if task in finished:
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if self._stopped.is_set():
            raise Cancelled(f"the request to engine '{self.engine.name}' was cancelled")
        raise EngineError(
            f"Engine '{self.engine.name}' at {public_url(self.engine.api_base)} did not send {what} "
            f"within {timeout:g} s.",
            status=504,
            code="engine_timeout",
        )

    def cancel(self) -> None:
        self.cancelled = True
        self._stopped.set()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owner._released(self.engine)
        if self._response is not None:
            with contextlib.suppress(Exception):
                await self._response.aclose()


def _valid_engines(configured: Sequence[Any]) -> list[EngineConfig]:
    """The configured engines that parse; a bad one is logged and left out, the server still starts."""
    engines = []
    for item in configured:
        if plain_config_keys(item):
            name = item.get("name") or item.get("TypeName") or "?"
            log.error(
                "remote engine %r left out: its api_key is plain text in the Jupyter config, which Jupyter "
                "prints in its DEBUG log and --show-config. Use 'api_key_env': 'VARIABLE' (the key in the "
                "server's environment), or 'api_key': SecretStr('...') (from pydantic import SecretStr) in "
                "jupyter_server_config.py. Rotate a key that was set as plain text with --debug on.",
                name,
            )
            continue
        try:
            engines.append(parse_engine(item, source="FoundryApp.remote_engines"))
        except FoundryError as exc:
            log.error("remote engine left out: %s", exc.message)
    return engines


def _upstream_body(body: dict[str, Any], model: str) -> dict[str, Any]:
    upstream = {k: v for k, v in body.items() if k not in DROPPED_FIELDS}
    upstream["model"] = model
    return upstream
