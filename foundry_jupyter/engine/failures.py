"""og's exceptions as the `FoundryError`s callers see: a request's own mistake is a 400, the rest a 500."""

from __future__ import annotations

from foundry_jupyter.errors import FoundryError, InvalidRequest

_REQUEST_WORDS = ("grammar", "guidance", "schema", "regex", "lark")


def is_request_error(exc: BaseException) -> bool:
    """An error caused by what was asked (a bad grammar), which another og API would repeat."""
    return isinstance(exc, FoundryError) or any(word in str(exc).lower() for word in _REQUEST_WORDS)


def as_foundry_error(exc: BaseException) -> FoundryError:
    if isinstance(exc, FoundryError):
        return exc
    text = str(exc)
    if is_request_error(exc):
        return InvalidRequest(f"Invalid response_format: {text}", param="response_format")
    return FoundryError(f"Generation failed: {text}", status=500, code="generation_failed")
