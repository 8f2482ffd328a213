"""The cheap prompt-length bound of `engine.params`, checked before a request is sent to its runner,
so an oversized prompt is refused without crossing the socket or being tokenized."""

from __future__ import annotations

from typing import Any

from ..engine.params import check_prompt_chars


def prompt_chars(request: dict[str, Any]) -> int:
    """Characters of text in a runner request (`chat` messages or a `text` prompt)."""
    if "messages" in request:
        return sum(len(str(m.get("content") or "")) for m in request.get("messages") or ())
    return len(str(request.get("prompt") or ""))


def refuse_oversized_prompt(request: dict[str, Any], context_length: int | None) -> None:
    param = "messages" if "messages" in request else "prompt"
    check_prompt_chars(prompt_chars(request), context_length, param)
