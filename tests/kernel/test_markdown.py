"""Dollars in answers: prices stay prices, math the model writes stays math, code stays code."""

from __future__ import annotations

import pytest

from foundry_jupyter.engine.types import Delta
from foundry_jupyter.kernel.markdown import escape_dollars
from foundry_jupyter.kernel.results import ChatResult, History
from foundry_jupyter.kernel.streaming import MarkdownStream, consume


@pytest.mark.parametrize(
    ("text", "markdown"),
    [
        ("It costs $5 and $10.", r"It costs \$5 and \$10."),
        ("one $", r"one \$"),
        ("no dollars here", "no dollars here"),
        (r"already \$5", r"already \$5"),
        (r"a backslash \\$5", r"a backslash \\\$5"),
        ("$$E = mc^2$$ costs $3", r"$$E = mc^2$$ costs \$3"),
        ("$$\n\\int_0^1 x\\,dx\n$$", "$$\n\\int_0^1 x\\,dx\n$$"),
        (r"inline \(a^2 + b^2\) for $4", r"inline \(a^2 + b^2\) for \$4"),
        (r"display \[x = $y\] then $1", r"display \[x = $y\] then \$1"),
        ("run `echo $HOME` for $0", r"run `echo $HOME` for \$0"),
        ("``a ` $b``, $c", r"``a ` $b``, \$c"),
        ("```bash\nexport A=$B\n```\nPrice: $2", "```bash\nexport A=$B\n```\nPrice: \\$2"),
        ("~~~\n$x\n~~~", "~~~\n$x\n~~~"),
        ("```sh\necho $PATH", "```sh\necho $PATH"),  # a code block still streaming
        ("$$ not closed yet", r"\$\$ not closed yet"),
    ],
)
def test_escape_dollars(text: str, markdown: str) -> None:
    assert escape_dollars(text) == markdown


def test_answers_keep_their_plain_text_and_escape_only_the_markdown() -> None:
    result = ChatResult("Lunch was $5 and dinner $10.", "m:1")
    data, _ = result.mimebundle()
    assert data["text/plain"] == "Lunch was $5 and dinner $10."
    assert data["text/markdown"] == r"Lunch was \$5 and dinner \$10."
    history = History([{"role": "assistant", "content": "$5 and $10"}])
    assert r"\$5 and \$10" in history._repr_markdown_()


def test_streamed_updates_are_escaped_too(shell) -> None:
    stream = MarkdownStream(max_updates_per_s=0)
    pieces = [Delta("$5 "), Delta("and $10"), Delta("", finish_reason="stop")]
    consume(pieces, stream, lambda text, last: ChatResult(text, "m:1"))
    shown = [c["data"] for c in shell.display_pub.calls if "data" in c]
    assert shown[0] == {"text/markdown": r"\$5 ", "text/plain": "$5 "}
    assert all(d["text/markdown"].count(r"\$") == d["text/plain"].count("$") for d in shown)
    assert shown[-1]["text/plain"] == "$5 and $10"
