"""Model answers as Markdown that Jupyter will not turn into math by accident.

JupyterLab and Notebook typeset `$...$` in Markdown output as LaTeX, so an answer quoting two prices
("$5 and $10") shows as italic math. Single dollars are escaped (`\\$` renders as `$`); what a model
clearly writes as math (`$$...$$`, `\\(...\\)`, `\\[...\\]`) and code (fenced blocks, code spans, where a
backslash would show) are left alone.
"""

from __future__ import annotations

import re

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
# A dollar after an even number of backslashes (none included) is unescaped.
_LONE_DOLLAR = re.compile(r"(?<!\\)((?:\\\\)*)\$")


def escape_dollars(text: str) -> str:
    """`text` with every dollar outside math and code escaped for Markdown."""
    if "$" not in text:
        return text
    out = []
    start = 0
    for kept in _KEPT.finditer(text):
        out.append(_LONE_DOLLAR.sub(r"\1\\$", text[start : kept.start()]))
        out.append(kept.group(0))
        start = kept.end()
    out.append(_LONE_DOLLAR.sub(r"\1\\$", text[start:]))
    return "".join(out)
