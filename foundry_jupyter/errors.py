"""Errors every layer raises, each knowing its OpenAI error shape.

The REST handlers, the CLI and the magics turn a `FoundryError` into, respectively, an OpenAI-shaped
4xx body, one line on stderr with a non-zero exit, and a one-line message in the notebook. Anything
that is not a `FoundryError` is a bug on our side (500, logged with its traceback, never shown).
"""

from __future__ import annotations

import json
from typing import Any


class FoundryError(Exception):
    """A failure whose message a person can act on."""

    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error body: `{"error": {"message", "type", "param", "code"}}`."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(FoundryError):
    code = "invalid_request"


class ModelNotFound(FoundryError):
    status = 404
    code = "model_not_found"


class ModelNotCached(FoundryError):
    """The catalog knows the model but it has not been downloaded."""

    code = "model_not_cached"


class CacheReadOnly(FoundryError):
    """The model cache (or the part of it a change needs) cannot be written."""

    status = 403
    type = "permission_error"
    code = "cache_read_only"


class ContextLengthExceeded(FoundryError):
    code = "context_length_exceeded"


class ProviderUnavailable(FoundryError):
    """An execution provider was asked for that this build or this machine does not have."""

    code = "provider_unavailable"


class DownloadFailed(FoundryError):
    status = 502
    type = "api_error"
    code = "download_failed"


class NetworkUnavailable(DownloadFailed):
    code = "network_unavailable"


class Cancelled(FoundryError):
    status = 499
    code = "cancelled"


class RunnerFailed(FoundryError):
    """A model runner process died or stopped answering."""

    status = 503
    type = "server_error"
    code = "runner_failed"


def error_from_body(status: int, body: Any, fallback: str) -> FoundryError:
    """The error an HTTP error answer stands for: its OpenAI-shaped body (`{"error": {message, code}}`,
    raw or parsed), Jupyter's `{message, reason}`, or `fallback` when the body says nothing usable."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    error = body.get("error", body) if isinstance(body, dict) else None
    message, code = fallback, None
    if isinstance(error, dict):
        message = str(error.get("message") or error.get("reason") or fallback)
        code = error.get("code")
    error_class = ModelNotFound if status == 404 else FoundryError
    return error_class(message, code=code, status=status)
