"""Notebook state a prompt may name, and code taken back out of an answer.

A `%%foundry` cell or a `%foundry run` prompt may write `{In[3]}` (what cell 3 said), `{Out[3]}` (its
result), `{Err}` (the last error with its traceback), `{Err[5]}` (the error cell 5 raised) and
`{name}` (a variable; a DataFrame shows as shape, columns and head); `{{` and `}}` are literal braces.

`%load_ext` installs no hooks, and Python keeps only the most recent error (`sys.last_value`), so
`{Err[N]}` knows cell N's error when it is the last one or was the last one when an earlier
`%foundry` command ran: `ErrorLog.note` is called at every command.
"""

from __future__ import annotations

import numbers
import re
import string
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError

MAX_VALUE_CHARS = 2000
MAX_TRACEBACK_CHARS = 3000
LIBRARY_FRAMES = 2  # frames outside the notebook's cells kept at the end of a traceback
HEAD_ROWS = 5

_FIELD = re.compile(r"^([A-Za-z_]\w*)(?:\[(\d+)\])?$")
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_BRACES_HINT = "write {{ and }} for literal braces"


@dataclass(frozen=True)
class CellError:
    """An exception raised by a cell: where, the code that raised it and its traceback as text."""

    cell: int | None
    source: str
    summary: str
    traceback: str


class ErrorLog:
    """The errors this notebook's cells raised, as far as the kernel still knows them."""

    def __init__(self, ignore: tuple[type[BaseException], ...] = ()) -> None:
        self._ignore = ignore  # errors that are messages of the magics themselves
        self._by_cell: dict[int, CellError] = {}
        self._last: CellError | None = None
        self._last_exception: BaseException | None = None

    def note(self, shell: Any) -> CellError | None:
        """Record the kernel's most recent error, if it is new; return it."""
        exc = _last_exception()
        if exc is None:
            return None
        if exc is not self._last_exception and not isinstance(exc, self._ignore):
            self._last_exception = exc
            self._last = describe_error(exc, shell)
            if self._last.cell is not None:
                self._by_cell[self._last.cell] = self._last
        return self._last

    def last(self, shell: Any) -> CellError | None:
        return self.note(shell)

    def of_cell(self, shell: Any, cell: int) -> CellError:
        self.note(shell)
        error = self._by_cell.get(cell)
        if error is None:
            known = ", ".join(f"Err[{n}]" for n in sorted(self._by_cell)) or "none"
            raise UsageError(
                f"{{Err[{cell}]}}: no error known from In[{cell}] (errors known: {known}; "
                "the kernel keeps the most recent error only)"
            )
        return error


def _last_exception() -> BaseException | None:
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return exc if isinstance(exc, BaseException) else None


def _cell_numbers(shell: Any) -> dict[str, int]:
    """Compiled cells' file names -> execution counts (IPython's compiler keeps the map)."""
    compiler = getattr(shell, "compile", None)
    return dict(getattr(compiler, "_filename_map", {}) or {})


def describe_error(exc: BaseException, shell: Any) -> CellError:
    """The traceback from the first frame of a notebook cell on, with cells named `In[N]`."""
    cells = _cell_numbers(shell)
    report = traceback.TracebackException.from_exception(exc)
    cell: int | None = None
    if isinstance(exc, SyntaxError) and exc.filename in cells:
        cell = cells[exc.filename]
    chained: traceback.TracebackException | None = report
    while chained is not None:
        frames = list(chained.stack)
        first = next((i for i, f in enumerate(frames) if f.filename in cells), None)
        if first is not None:
            frames = frames[first:]
            if chained is report and cell is None:
                cell = cells[frames[0].filename]
        elif chained is report and cell is not None:  # a cell that did not compile: IPython's frames only
            frames = []
        chained.stack = traceback.StackSummary.from_list(_compact(frames, cells))
        following = chained.__cause__ or chained.__context__
        if following is not None and cell is not None and not _in_cells(following, cells):
            # an exception a library caught and replaced: its own frames say nothing about the cells
            chained.__cause__ = chained.__context__ = None
            following = None
        chained = following
    if isinstance(exc, SyntaxError) and cell is not None:
        report.filename = f"In[{cell}]"
    text = "".join(report.format()).rstrip()
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    summary = "".join(report.format_exception_only()).strip().splitlines()[-1]
    source = (cell_source(shell, cell) or "") if cell is not None else ""
    return CellError(cell=cell, source=source, summary=summary, traceback=text)


def _inputs(shell: Any) -> list[str]:
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    return list(history if history is not None else shell.user_ns.get("In", []))


def _in_cells(report: traceback.TracebackException, cells: dict[str, int]) -> bool:
    return any(frame.filename in cells for frame in report.stack)


def _compact(frames: list[traceback.FrameSummary], cells: dict[str, int]) -> list[traceback.FrameSummary]:
    """Cells named In[N]; of the library frames after the last cell frame, only the innermost few
    (a model's context is short, and the cause is in the cells or at the end)."""
    last_cell = max((i for i, f in enumerate(frames) if f.filename in cells), default=-1)
    library = frames[last_cell + 1 :]
    kept = frames[: last_cell + 1]
    if len(library) > LIBRARY_FRAMES:
        skipped = len(library) - LIBRARY_FRAMES
        marker = traceback.FrameSummary(f"({skipped} more)", 0, "...", lookup_line=False, line="")
        kept.append(marker)
        library = library[-LIBRARY_FRAMES:]
    for frame in kept + library:
        if frame.filename in cells:
            frame.filename = f"In[{cells[frame.filename]}]"
        else:  # site-packages/pandas/core/frame.py reads as pandas/core/frame.py
            frame.filename = frame.filename.split("site-packages/")[-1]
    return kept + library


def cell_source(shell: Any, cell: int) -> str | None:
    """What cell `cell` said, as typed (magics included); None for a cell not run."""
    inputs = _inputs(shell)
    return str(inputs[cell]).rstrip() if 0 < cell < len(inputs) else None


def render_value(value: Any) -> str:
    """A variable as a model should read it: text and numbers as printed, a DataFrame compactly, anything
    else its repr."""
    if isinstance(value, str | numbers.Number):  # numpy's scalars too: 438, not np.int64(438)
        return str(value)
    if _is_dataframe(value):
        return _render_frame(value)
    text = repr(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + " ..."
    return text


def _is_dataframe(value: Any) -> bool:
    return all(hasattr(value, attr) for attr in ("shape", "columns", "head", "dtypes", "to_string"))


def _render_frame(frame: Any) -> str:
    rows, cols = frame.shape
    columns = ", ".join(f"{name} ({dtype})" for name, dtype in frame.dtypes.items())
    head = frame.head(HEAD_ROWS).to_string(max_cols=20, max_colwidth=40)
    return f"DataFrame, {rows} rows x {cols} columns\ncolumns: {columns}\nfirst rows:\n{head}"


class NotebookContext:
    """Expands the `{...}` names of a prompt against one shell's state."""

    def __init__(self, shell: Any, errors: ErrorLog) -> None:
        self.shell = shell
        self.errors = errors

    def expand(self, prompt: str) -> str:
        try:
            parts = list(string.Formatter().parse(prompt))
        except ValueError as err:  # a lone { or }
            raise UsageError(f"the prompt has a stray brace ({err}); {_BRACES_HINT}") from None
        out: list[str] = []
        for literal, field, spec, conversion in parts:
            out.append(literal)
            if field is None:
                continue
            out.append(self._field(field, spec or "", conversion))
        return "".join(out)

    def _field(self, field: str, spec: str, conversion: str | None) -> str:
        match = _FIELD.match(field.strip())
        if match is None:
            raise UsageError(
                f"{{{field}}} in the prompt: name a variable, In[N], Out[N], Err or Err[N]; {_BRACES_HINT}"
            )
        name, index = match.group(1), match.group(2)
        if name in ("In", "Out", "Err"):
            return self._history(name, int(index) if index is not None else None)
        if index is not None:
            raise UsageError(f"{{{field}}} in the prompt: only In, Out and Err take [N]")
        ns = self.shell.user_ns
        if name not in ns:
            raise UsageError(
                f"{{{name}}} in the prompt: no variable {name!r} in this notebook; {_BRACES_HINT}"
            )
        value = ns[name]
        if conversion == "r":
            return repr(value)
        if spec:
            try:
                return format(value, spec)
            except (TypeError, ValueError) as err:
                raise UsageError(f"{{{field}:{spec}}} in the prompt: {err}") from None
        return render_value(value)

    def _history(self, name: str, index: int | None) -> str:
        if name == "Err":
            error = self.errors.last(self.shell) if index is None else self.errors.of_cell(self.shell, index)
            if error is None:
                raise UsageError("{Err} in the prompt: no cell has raised an error yet")
            return error.traceback
        if index is None:
            raise UsageError(f"{{{name}}} in the prompt: name a cell, as in {{{name}[3]}}")
        if name == "In":
            source = cell_source(self.shell, index)
            if source is None:
                ran = max(len(_inputs(self.shell)) - 1, 0)
                raise UsageError(f"{{In[{index}]}} in the prompt: no such cell (this kernel has run {ran})")
            return source
        outputs = self.shell.user_ns.get("Out", {})
        if index not in outputs:
            raise UsageError(f"{{Out[{index}]}} in the prompt: In[{index}] has no output")
        return render_value(outputs[index])


def explain_prompt(error: CellError) -> str:
    """The message that asks a model to explain an error and how to fix it."""
    where = f"cell In[{error.cell}]" if error.cell is not None else "notebook"
    parts = [f"A Jupyter {where} raised an error. Explain what went wrong and how to fix it."]
    if error.source:
        parts.append(f"The cell:\n```python\n{error.source}\n```")
    parts.append(f"The traceback:\n```\n{error.traceback}\n```")
    return "\n\n".join(parts)


CODE_INSTRUCTION = "Answer with Python code only, in one fenced code block."


def extract_code(answer: str) -> str:
    """The code of an answer: its fenced blocks joined, or the whole answer when it has none."""
    blocks = [block.strip("\n") for block in _FENCE.findall(answer)]
    code = "\n\n".join(block for block in blocks if block.strip())
    return code or answer.strip()
