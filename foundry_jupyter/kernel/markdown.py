"""Model answers as Markdown that Jupyter will not turn into math by accident.

JupyterLab and Notebook typeset `$...$` in Markdown output as LaTeX, so an answer quoting two prices
("$5 and $10") shows as italic math. A plain Markdown escape is not enough there: the renderer turns
`\\$` into `$` and MathJax then pairs the dollars in the page. So each single dollar becomes
`<span>\\$</span>`: escaped for the Markdown step, and alone in its element for MathJax, which does not
pair delimiters across elements; it still reads as `$` in any Markdown renderer that allows inline
HTML. What a model clearly writes as math (`$$...$$`, `\\(...\\)`, `\\[...\\]`) and code (fenced blocks,
code spans, where the markup would show) are left alone.
"""

from __future__ import annotations

import re

DOLLAR = r"<span>\$</span>"

# Spans kept as written, tried left to right. An unclosed fence runs to the end (an answer still
# streaming); an unclosed code span or `$$` is not a span yet, so its dollars are escaped for now.
_KEPT = re.compile(
    r"""
      ^[ ]{0,3}(?P<fence>`{3,}|~{3,})[^\n]*(?:\n|\Z)      # fenced code block: its opening line
        (?:.*?^[ ]{0,3}(?P=fence)[`~]*[ \t]*$|.*\Z)        # ... up to its closing fence or the end
    | (?P<ticks>`+)[^`].*?(?<!`)(?P=ticks)(?!`)            # code span
    | (?<!\\)\$\$.+?(?<!\\)\$\$                            # display math
    | \\\(.+?\\\)                                          # inline math \( \)
    | \\\[.+?\\\]                                          # display math \[ \]
    """,
    re.DOTALL | re.MULTILINE | re.VERBOSE,
)
# A dollar, escaped or not: group 1 keeps the backslashes before it that escape each other.
_LONE_DOLLAR = re.compile(r"(?<!\\)((?:\\\\)*)\\?\$")


def _escape(match: re.Match[str]) -> str:
    return match.group(1) + DOLLAR


def escape_dollars(text: str) -> str:
    """`text` with every dollar outside math and code escaped for Markdown."""
    if "$" not in text:
        return text
    out = []
    start = 0
    for kept in _KEPT.finditer(text):
        out.append(_LONE_DOLLAR.sub(_escape, text[start : kept.start()]))
        out.append(kept.group(0))
        start = kept.end()
    out.append(_LONE_DOLLAR.sub(_escape, text[start:]))
    return "".join(out)
