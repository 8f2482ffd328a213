"""The streaming display's throttle and the result objects' renderings, without a model."""

from __future__ import annotations

from typing import Any

from foundry_jupyter.engine.types import Delta, Usage
from foundry_jupyter.kernel.results import METADATA_KEY, ChatResult, Grid, History, Table
from foundry_jupyter.kernel.streaming import MarkdownStream, consume
from foundry_jupyter.units import human_size


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _result(text: str, last: Delta | None) -> ChatResult:
    return ChatResult(text, "m:1", "cpu", last.usage if last else None, last.finish_reason if last else None)


def test_redraws_are_throttled_but_the_final_text_always_lands(shell: Any) -> None:
    clock = FakeClock()
    stream = MarkdownStream(max_updates_per_s=10, clock=clock)

    def deltas():
        for i in range(30):  # 30 pieces, 20 ms apart: 0.6 s of generation
            clock.now = i * 0.02
            yield Delta(f"w{i} ")
        yield Delta("", finish_reason="stop", usage=Usage(3, 30))

    result = consume(deltas(), stream, _result)
    updates = [c for c in shell.display_pub.calls if c.get("update")]
    # at most one redraw per 0.1 s of generation (0.0, 0.1, ..., 0.5, 0.58), plus the final one
    assert 2 <= len(updates) <= 8
    assert updates[-1]["data"]["text/markdown"] == result.text == "".join(f"w{i} " for i in range(30))
    assert updates[-1]["metadata"][METADATA_KEY]["usage"]["completion_tokens"] == 30


def test_cancel_stops_reading(shell: Any) -> None:
    import threading

    cancel = threading.Event()

    def deltas():
        yield Delta("a")
        cancel.set()
        yield Delta("b")
        yield Delta("c")

    result = consume(deltas(), None, _result, cancel=cancel)
    assert result.text == "a" and result.finish_reason == "cancelled"


def test_chat_result_renders_everywhere() -> None:
    result = ChatResult("**hi**", "tiny-generic-cpu:1", "cpu", Usage(5, 2), "length", "kernel")
    data, metadata = result._repr_mimebundle_()
    assert data["text/markdown"] == "**hi**"
    assert metadata[METADATA_KEY] == {
        "model": "tiny-generic-cpu:1",
        "execution_provider": "cpu",
        "backend": "kernel",
        "finish_reason": "length",
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 2,
            "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    from IPython.lib.pretty import pretty

    text = pretty(result)
    assert (
        text.startswith("**hi**") and "5 prompt + 2 completion tokens" in text and "stopped: length" in text
    )


def test_tables_and_history_render_as_text_and_html() -> None:
    table = Table("Status", [("backend", "kernel"), ("loaded", []), ("ok", True)])
    assert "backend  kernel" in str(table) and "loaded   -" in str(table) and "yes" in str(table)
    assert "<th" in table._repr_html_()
    grid = Grid("EPs", ("name", "usable"), [("cpu", True), ("cuda", False)])
    assert str(grid).splitlines()[2].split() == ["cpu", "yes"]
    history = History([{"role": "user", "content": "<b>x</b>"}])
    assert "&lt;b&gt;" in history._repr_html_()
    assert str(history) == "[user] <b>x</b>"


def test_human_size() -> None:
    assert human_size(None) == ""
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(3 * 1024**3) == "3.0 GiB"
