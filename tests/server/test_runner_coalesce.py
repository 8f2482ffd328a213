"""The runner merges deltas that piled up between two writes into one message."""

from __future__ import annotations

from foundry_jupyter.engine.types import Delta, Usage
from foundry_jupyter.errors import ContextLengthExceeded
from foundry_jupyter.runner.serve import _coalesce


def test_consecutive_deltas_become_one_message_with_the_last_ones_ending() -> None:
    usage = Usage(prompt_tokens=3, completion_tokens=3)
    ready = [
        ("delta", Delta("a")),
        ("delta", Delta("b")),
        ("delta", Delta("c", "stop", usage)),
        ("end", None),
    ]
    events = _coalesce(ready)
    assert len(events) == 1
    assert events[0]["t"] == "abc"
    assert events[0]["done"]["finish_reason"] == "stop"
    assert events[0]["done"]["usage"]["completion_tokens"] == 3


def test_an_error_keeps_its_place_after_the_text_before_it() -> None:
    events = _coalesce(
        [("delta", Delta("x")), ("delta", Delta("y")), ("error", ContextLengthExceeded("long"))]
    )
    assert events[0] == {"t": "xy"}
    assert events[1]["error"]["code"] == "context_length_exceeded"


def test_a_lone_delta_is_sent_as_it_is() -> None:
    assert _coalesce([("delta", Delta("only"))]) == [{"t": "only"}]
    assert _coalesce([("end", None)]) == []
