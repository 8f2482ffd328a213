"""The base handler: authentication, the OpenAI error shape, JSON bodies and server-sent events.

jupyter_server's `APIHandler` answers errors as `{"message", "reason"}`, turns a body that is not UTF-8
into a 500 and leaves unknown paths to an HTML 404; every route here answers
`{"error": {"message", "type", "param", "code"}}` instead, with no traceback in any body.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
from collections.abc import AsyncGenerator
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.iostream import StreamClosedError

from ..errors import FoundryError, InvalidRequest
from ..service.core import FoundryService
from . import limits

AUTH_RESOURCE = "foundry"
DEFAULT_MAX_BODY_SIZE = 32 * 1024 * 1024
_VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


class RequestTooLarge(FoundryError):
    status = 413
    code = "request_too_large"


# Bodies arrive through `data_received`, after `prepare`: a body over the limit is refused from its
# Content-Length alone, before it is read, and a chunked one is dropped as it passes the limit.
@web.stream_request_body
class FoundryHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = AUTH_RESOURCE
    # The methods whose `Operation` says `changes_state` (set by `handlers.route`): even a GET among
    # them must pass Jupyter's XSRF check when it carries only the login cookie.
    state_changing: frozenset[str] = frozenset()

    def initialize(self, name: str = "foundry", *args: Any, **kwargs: Any) -> None:
        super().initialize(name, *args, **kwargs)
        self._cancel_on_close: Any = None
        self._client_gone = False
        self._host_refused = False
        self._xsrf_refused = False
        self._body = bytearray()
        self._body_too_large = False

    async def prepare(self) -> None:
        await super().prepare()
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_body_size:
            self._answer_too_large()
            return  # answered and detached: nothing more may touch the request
        if self.request.method in self.state_changing:
            self.check_xsrf_cookie()

    def check_xsrf_cookie(self) -> None:
        try:
            super().check_xsrf_cookie()
        except web.HTTPError:
            self._xsrf_refused = True  # reported as such, not as a bad token
            raise

    def check_host(self) -> bool:
        # Remembered so that the 403 jupyter_server raises for it is not reported as a bad token.
        allowed = super().check_host()
        self._host_refused = not allowed
        return allowed

    @functools.cached_property
    def request_id(self) -> str:
        """Names this request in the log and in the `X-Request-Id` header."""
        return secrets.token_hex(6)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("X-Request-Id", self.request_id)

    @property
    def service(self) -> FoundryService:
        return self.settings["foundry_service"]

    @property
    def service_url(self) -> str:
        """The `.../foundry` root as the client reached it (no trailing slash, as Foundry's Endpoints)."""
        prefix = self.settings["foundry_prefix"]
        return f"{self.request.protocol}://{self.request.host}{prefix}".rstrip("/")

    # ---- request bodies ----------------------------------------------------------------------
    @property
    def max_body_size(self) -> int:
        return int(self.settings.get("foundry_max_body_size", DEFAULT_MAX_BODY_SIZE))

    def data_received(self, chunk: bytes) -> None:
        if self._body_too_large:
            return
        if len(self._body) + len(chunk) > self.max_body_size:
            self._body_too_large = True
            self._body = bytearray()
            return
        self._body += chunk

    def _refuse_body(self) -> None:
        raise RequestTooLarge(
            f"The request body is larger than this server accepts ({self.max_body_size} bytes, "
            "FoundryApp.max_body_size).",
        )

    def _answer_too_large(self) -> None:
        """The 413, from the headers alone: the body is never read (see `limits`)."""
        try:
            self._refuse_body()
        except RequestTooLarge as exc:
            error = exc
        self.log.info(
            "request %s: %s %s -> 413 (%s bytes announced)",
            self.request_id,
            self.request.method,
            self.request.path,
            self.request.headers.get("Content-Length"),
        )
        limits.answer_and_drain(
            self.detach(), error.status, error.to_dict(), {"X-Request-Id": self.request_id}
        )

    def json_body(self) -> Any:
        if self._body_too_large:
            self._refuse_body()
        body = bytes(self._body)
        if not body.strip():
            raise InvalidRequest(
                "The request body is empty: send a JSON object (Content-Type: application/json)."
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(
                "The request body is not valid UTF-8 text: send JSON encoded as UTF-8."
            ) from None
        too_deep = InvalidRequest(f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"The request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None
        except RecursionError:
            raise too_deep from None
        if _too_deep(data):
            raise too_deep
        return data

    def query_int(self, name: str, *, minimum: int = 0) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return None
        try:
            value = int(raw)
        except ValueError:
            raise InvalidRequest(
                f"Query parameter '{name}' must be an integer, not {raw!r}.", param=name
            ) from None
        if value < minimum:
            raise InvalidRequest(f"Query parameter '{name}' must be at least {minimum}.", param=name)
        return value

    def query_bool(self, name: str, default: bool = False) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise InvalidRequest(f"Query parameter '{name}' must be true or false, not {raw!r}.", param=name)

    # ---- names from the caller -------------------------------------------------------------------
    def model_name(self, name: str, param: str = "model") -> str:
        """A model alias or id. The model manager also takes a folder path for a model; over HTTP that
        would let a caller probe and load folders anywhere on the server, so paths are refused here."""
        bare = name.strip()
        parts = bare.replace("\\", "/").split("/")
        if bare.startswith(("/", "~", ".")) or "\\" in bare or ".." in parts or _is_dir(bare):
            raise InvalidRequest(
                f"{name!r} looks like a folder path; this API takes a model alias or id (name:version). "
                "To serve a model folder, register it: jupyter foundry model register <folder> --alias "
                "<name>, then use the alias.",
                param=param,
                code="invalid_model_name",
            )
        return name

    def ep_name(self, ep: str | None, param: str = "ep") -> str | None:
        """An execution provider name (cpu, cuda, CUDAExecutionProvider...): a plain word, as it goes on
        the model runner's command line."""
        if ep is None or ep == "":
            return None
        if not _EP.fullmatch(ep):
            raise InvalidRequest(
                f"Invalid execution provider {ep!r}: use a name such as cpu, cuda or dml.", param=param
            )
        return ep

    # ---- answers -------------------------------------------------------------------------------
    def send_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, ensure_ascii=False))

    def cancel_on_close(self, stream: Any) -> None:
        """Cancel `stream` (anything with `cancel()`) if the client disconnects."""
        self._cancel_on_close = stream
        if self._client_gone:
            stream.cancel()

    def on_connection_close(self) -> None:
        self._client_gone = True
        if self._cancel_on_close is not None:
            self._cancel_on_close.cancel()
        super().on_connection_close()

    async def send_events(
        self, events: AsyncGenerator[list[Any], None], *, done: bool = True, named: bool = False
    ) -> None:
        """Server-sent events: `data: <json>` per item, `data: [DONE]` at the end. Each list of items
        goes out in one write. A failure after the stream started becomes a final
        `data: {"error": ...}` event. `named`: each item also gets an `event: <its type>` line, as
        the Responses API sends them."""
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        try:
            async for items in events:
                self.write("".join(_event(item, named) for item in items))
                await self.flush()
            if done:
                self.write("data: [DONE]\n\n")  # goes out with the end of the response
        except StreamClosedError:
            self._client_left()
            return
        except Exception as exc:
            if self._client_gone:
                return
            if not isinstance(exc, FoundryError):
                self.log.error("request %s failed mid-stream", self.request_id, exc_info=exc)
            error = self._error_body(exc)[1]
            try:
                await self._write_event(json.dumps(error))
            except StreamClosedError:
                return
        finally:
            await events.aclose()
        if not self._client_gone:
            with contextlib.suppress(StreamClosedError):
                await self.finish(set_content_type="text/event-stream")

    async def send_lines(
        self, lines: AsyncGenerator[str, None], content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        """A streamed plain-text body, one line at a time (Foundry's download progress)."""
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-cache")
        try:
            async for line in lines:
                self.write(line + "\n")
                await self.flush()
            await self.finish(set_content_type=content_type)
        except StreamClosedError:
            self._client_left()
        finally:
            await lines.aclose()

    async def _write_event(self, data: str) -> None:
        self.write(f"data: {data}\n\n")
        await self.flush()

    def _client_left(self) -> None:
        self._client_gone = True
        if self._cancel_on_close is not None:
            self._cancel_on_close.cancel()

    # ---- errors --------------------------------------------------------------------------------
    def _error_body(self, exc: BaseException | None, status: int = 500) -> tuple[int, dict[str, Any]]:
        if isinstance(exc, FoundryError):
            return exc.status, exc.to_dict()
        if isinstance(exc, web.HTTPError):
            status = exc.status_code
        if status == 403 and self._host_refused:
            return status, _shape(
                f"Requests addressed to host {self.request.host!r} are refused: use 127.0.0.1 or localhost, "
                "or start the server with ServerApp.allow_remote_access enabled.",
                "permission_error",
                "host_not_allowed",
            )
        if status in (401, 403) and not getattr(self, "_jupyter_current_user", None):
            status = 401
            self.set_header("WWW-Authenticate", 'Bearer realm="jupyter"')
            return status, _shape(
                "Missing or invalid token: send the Jupyter server's token as "
                "'Authorization: Bearer <token>' (the OpenAI client's api_key).",
                "authentication_error",
                "invalid_api_key",
            )
        if status == 403 and self._xsrf_refused:
            return status, _shape(
                f"{self.request.method} {self.request.path} changes the server's state and carries no token, "
                "only a login cookie (as a link or page from another site would): send the Jupyter token "
                "('Authorization: Bearer <token>' or ?token=), or the _xsrf cookie's value as the "
                "X-XSRFToken header.",
                "permission_error",
                "xsrf_check_failed",
            )
        if status == 403:
            return status, _shape("You are not allowed to use this route.", "permission_error", "forbidden")
        if status == 404:
            return status, _shape(_not_found(self.request), "invalid_request_error", "not_found")
        if status == 405:
            allowed = self.allowed_methods()
            self.set_header("Allow", ", ".join(allowed))
            return status, _shape(
                f"{self.request.method} is not allowed on {self.request.path}; use {' or '.join(allowed)}.",
                "invalid_request_error",
                "method_not_allowed",
            )
        if isinstance(exc, web.HTTPError) and status < 500:
            message = exc.log_message % exc.args if exc.log_message else (exc.reason or "Bad request")
            code = "invalid_request" if status == 400 else None
            return status, _shape(message, "invalid_request_error", code)
        return 500, _shape(
            f"Internal server error (request id {self.request_id}); the Jupyter server log has the details.",
            "server_error",
            "internal_error",
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        status, body = self._error_body(exc, status_code)
        self.clear_header("Content-Type")
        self.set_status(status, reason="Client Closed Request" if status == 499 else None)
        self.finish(json.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Caller mistakes are not server faults: one line, no traceback.
        if isinstance(value, FoundryError):
            self.log.info(
                "request %s: %s %s -> %s %s",
                self.request_id,
                self.request.method,
                self.request.path,
                value.status,
                value.message,
            )
        elif isinstance(value, web.HTTPError):
            super().log_exception(typ, value, tb)
        else:
            self.log.error(
                "request %s: %s %s failed",
                self.request_id,
                self.request.method,
                self.request.path,
                exc_info=(typ, value, tb),
            )

    @classmethod
    def allowed_methods(cls) -> list[str]:
        base = web.RequestHandler
        return [verb for verb in _VERBS if getattr(cls, verb.lower()) is not getattr(base, verb.lower())]


MAX_JSON_DEPTH = 128  # a deeper body would exhaust Python's recursion in validation or encoding


def _too_deep(data: Any) -> bool:
    """Whether `data` nests lists and objects more than MAX_JSON_DEPTH levels (walked without recursion)."""
    level: list[Any] = [data]
    for _ in range(MAX_JSON_DEPTH):
        level = [
            child
            for node in level
            if isinstance(node, (list, dict))
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, (list, dict))
        ]
        if not level:
            return False
    return True


_EP = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _is_dir(name: str) -> bool:
    """Whether `name` names a folder relative to the server's working directory."""
    if "/" not in name:
        return False
    try:
        return os.path.isdir(name)
    except (OSError, ValueError):
        return False


def _event(item: Any, named: bool) -> str:
    data = f"data: {json.dumps(item, ensure_ascii=False)}\n\n"
    return f"event: {item['type']}\n{data}" if named else data


def _shape(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _not_found(request: Any) -> str:
    return (
        f"No route {request.method} {request.path}. "
        "GET foundry/openapi.json lists the routes this service offers."
    )
