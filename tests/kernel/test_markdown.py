"""Dollars in answers: prices stay prices, math the model writes stays math, code stays code."""

from __future__ import annotations

import pytest

from foundry_jupyter.engine.types import Delta
from foundry_jupyter.kernel.markdown import DOLLAR, escape_dollars
from foundry_jupyter.kernel.results import ChatResult, History
from foundry_jupyter.kernel.streaming import MarkdownStream, consume

D = DOLLAR  # a single dollar, as the Markdown shows it


@pytest.mark.parametrize(
    ("text", "markdown"),
    [
        ("It costs $5 and $10.", f"It costs {D}5 and {D}10."),
        ("one $", f"one {D}"),
        ("no dollars here", "no dollars here"),
        (r"already \$5", f"already {D}5"),
        (r"a backslash \\$5", "a backslash \\\\" + f"{D}5"),
        ("$$E = mc^2$$ costs $3", f"$$E = mc^2$$ costs {D}3"),
        ("$$\n\\int_0^1 x\\,dx\n$$", "$$\n\\int_0^1 x\\,dx\n$$"),
        (r"inline \(a^2 + b^2\) for $4", r"inline \(a^2 + b^2\) for " + f"{D}4"),
        (r"display \[x = $y\] then $1", r"display \[x = $y\] then " + f"{D}1"),
        ("run `echo $HOME` for $0", f"run `echo $HOME` for {D}0"),
        ("``a ` $b``, $c", f"``a ` $b``, {D}c"),
        ("```bash\nexport A=$B\n```\nPrice: $2", f"```bash\nexport A=$B\n```\nPrice: {D}2"),
        ("~~~\n$x\n~~~", "~~~\n$x\n~~~"),
        ("```sh\necho $PATH", "```sh\necho $PATH"),  # a code block still streaming
        ("$$ not closed yet", f"{D}{D} not closed yet"),
    ],
)
def test_escape_dollars(text: str, markdown: str) -> None:
    assert escape_dollars(text) == markdown


def test_answers_keep_their_plain_text_and_escape_only_the_markdown() -> None:
    result = ChatResult("Lunch was $5 and dinner $10.", "m:1")
    data, _ = result.mimebundle()
    assert data["text/plain"] == "Lunch was $5 and dinner $10."
    assert data["text/markdown"] == f"Lunch was {D}5 and dinner {D}10."
    history = History([{"role": "assistant", "content": "$5 and $10"}])
    assert f"{D}5 and {D}10" in history._repr_markdown_()


def test_streamed_updates_are_escaped_too(shell) -> None:
    stream = MarkdownStream(max_updates_per_s=0)
    pieces = [Delta("$5 "), Delta("and $10"), Delta("", finish_reason="stop")]
    consume(pieces, stream, lambda text, last: ChatResult(text, "m:1"))
    shown = [c["data"] for c in shell.display_pub.calls if "data" in c]
    assert shown[0] == {"text/markdown": f"{D}5 ", "text/plain": "$5 "}
    assert all(d["text/markdown"].count(D) == d["text/plain"].count("$") for d in shown)
    assert shown[-1]["text/plain"] == "$5 and $10"
