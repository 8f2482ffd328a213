"""What the magics return: objects that render as HTML in a notebook and as text in a terminal IPython.

Chat answers carry their provenance (model id, execution provider, token counts) in the output
metadata under the `"foundry"` key, where a notebook keeps it next to the output.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engine.types import Message, Usage
from .markdown import escape_dollars

METADATA_KEY = "foundry"


@dataclass
class ChatResult:
    """One answer: its text plus where it came from."""

    text: str
    model: str
    execution_provider: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    backend: str = ""
    reasoning: str = ""  # a reasoning model's thinking, shown folded above the answer, never in the history

    def provenance(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "execution_provider": self.execution_provider,
            "backend": self.backend,
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict() if self.usage else None,
        }

    def footer(self) -> str:
        parts = [self.model]
        if self.execution_provider:
            parts.append(self.execution_provider)
        if self.usage:
            u = self.usage
            cached = f" ({u.cached_tokens} reused)" if u.cached_tokens else ""
            parts.append(f"{u.prompt_tokens} prompt{cached} + {u.completion_tokens} completion tokens")
        if self.finish_reason and self.finish_reason != "stop":
            parts.append(f"stopped: {self.finish_reason}")
        return " · ".join(parts)

    def mimebundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return answer_bundle(self.text, self.reasoning), {METADATA_KEY: self.provenance()}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        return self.mimebundle()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        text = answer_text(self.text, self.reasoning)
        p.text(text if cycle else f"{text}\n[{self.footer()}]")

    def __str__(self) -> str:
        return self.text


THINKING = "thinking"


def answer_bundle(text: str, reasoning: str = "") -> dict[str, str]:
    """An answer as Markdown, a reasoning model's thinking folded above it in a `<details>` block, and
    as plain text for front ends without Markdown."""
    markdown = escape_dollars(text)
    if reasoning:
        # Blank lines around the thinking let Markdown render inside the HTML block.
        thought = escape_dollars(reasoning)
        markdown = f"<details><summary>{THINKING}</summary>\n\n{thought}\n\n</details>\n\n{markdown}"
    return {"text/markdown": markdown, "text/plain": answer_text(text, reasoning)}


def answer_text(text: str, reasoning: str = "") -> str:
    """The plain-text form of `answer_bundle`."""
    return f"[{THINKING}]\n{reasoning}\n[/{THINKING}]\n{text}" if reasoning else text


@dataclass
class Table:
    """A small titled table for status-like answers."""

    title: str
    rows: Sequence[tuple[str, Any]]

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{html.escape(_text(v))}</td></tr>"
            for k, v in self.rows
        )
        return f"<div><strong>{html.escape(self.title)}</strong><table>{body}</table></div>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def __str__(self) -> str:
        width = max((len(str(k)) for k, _ in self.rows), default=0)
        lines = [self.title] + [f"  {str(k).ljust(width)}  {_text(v)}" for k, v in self.rows]
        return "\n".join(lines)


@dataclass
class Report:
    """Several tables under one heading (status, hardware)."""

    title: str
    sections: list[Any] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # the raw answer, for programs

    def _repr_html_(self) -> str:
        inner = "".join(t._repr_html_() for t in self.sections)
        return f"<div><h4>{html.escape(self.title)}</h4>{inner}</div>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def __str__(self) -> str:
        return "\n\n".join([self.title, *(str(t) for t in self.sections)])


@dataclass
class Notice:
    """A one-line answer to an action (loaded, removed, ...), with the details for programs."""

    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        return {"text/plain": self.message}, {METADATA_KEY: self.data}

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass
class HelpText:
    text: str

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.text)}</pre>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)

    def __str__(self) -> str:
        return self.text


@dataclass
class History:
    """The conversation so far, as the model sees it."""

    messages: list[Message]
    model: str | None = None

    def __len__(self) -> int:
        return len(self.messages)

    def __getitem__(self, index: int) -> Message:
        return self.messages[index]

    def _repr_html_(self) -> str:
        if not self.messages:
            return "<em>No conversation yet.</em>"
        parts = []
        for m in self.messages:
            role = html.escape(str(m.get("role", "")))
            content = html.escape(str(m.get("content", "")))
            pre = f"<pre style='white-space:pre-wrap'>{content}</pre>"
            parts.append(f"<div><strong>{role}</strong>{pre}</div>")
        return "".join(parts)

    def _repr_markdown_(self) -> str:
        return "\n\n".join(
            f"**{m.get('role')}**: {escape_dollars(str(m.get('content')))}" for m in self.messages
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def __str__(self) -> str:
        if not self.messages:
            return "No conversation yet."
        return "\n".join(f"[{m.get('role')}] {m.get('content')}" for m in self.messages)

    def to_json(self) -> str:
        return json.dumps(self.messages, indent=2, ensure_ascii=False)


def hardware_view(report: dict[str, Any]) -> Report:
    """`GET foundry/hardware` JSON (= `HardwareReport.to_dict()`) as titled tables."""
    from .tables import human_size

    cpu = report.get("cpu") or {}
    memory = report.get("memory") or {}
    machine = [
        ("OS", report.get("os")),
        ("Python", report.get("python")),
        ("onnxruntime-genai", report.get("onnxruntimeGenaiVersion")),
        ("CPU", f"{cpu.get('model', '?')} ({cpu.get('architecture', '?')})"),
        ("cores", f"{cpu.get('physicalCores') or '?'} physical, {cpu.get('logicalCores') or '?'} logical"),
        (
            "memory",
            f"{human_size(memory.get('totalBytes'))} total, {human_size(memory.get('availableBytes'))} free",
        ),
    ]
    gpus = report.get("gpus") or []
    gpu_rows = [
        (g.get("name", "?"), ", ".join(x for x in (g.get("vendor"), human_size(g.get("memoryBytes"))) if x))
        for g in gpus
    ]
    npu_rows = [(n.get("name", "?"), n.get("vendor") or "") for n in report.get("npus") or []]
    providers = report.get("executionProviders") or []
    sections = [
        Table("Machine", machine),
        Table("GPUs", gpu_rows or [("-", "none detected")]),
        Table("NPUs", npu_rows or [("-", "none detected")]),
        Grid(
            "Execution providers",
            ("provider", "device type", "supported by this build", "device present", "usable", "note"),
            [
                (
                    p.get("name"),
                    p.get("deviceType"),
                    p.get("supported"),
                    p.get("device"),
                    p.get("usable"),
                    p.get("note"),
                )
                for p in providers
            ],
        ),
    ]
    return Report("Hardware", sections, report)


@dataclass
class Grid:
    """A titled table with a header row."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>" for row in self.rows
        )
        return f"<div><strong>{html.escape(self.title)}</strong><table><tr>{head}</tr>{body}</table></div>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def __str__(self) -> str:
        cells = [list(self.columns), *([_text(v) for v in row] for row in self.rows)]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = [self.title] + [
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells
        ]
        return "\n".join(line.rstrip() for line in lines)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value) or "-"
    return str(value)
