"""Every notebook in notebooks/ runs clean under nbclient, offline, on the tiny model.

The OpenAI SDK notebook needs the Jupyter server's service: `test_service.py` runs it through a kernel
that a real server started.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from foundry_jupyter.engine.testmodel import TINY_ID
from tests.support.packages import smollm2_installed

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NEEDS_SERVICE = {"02-openai-sdk.ipynb"}
SMOLLM2_ID = "SmolLM2-135M-Instruct-generic-cpu:1"


def run_notebook(path: Path, timeout: int = 120, model: str | None = None) -> Any:
    """Runs `path`; `model` replaces the quick start's `MODEL = ...` line."""
    import nbclient
    import nbformat

    book = nbformat.read(path, as_version=4)
    if model is not None:
        for cell in book.cells:
            cell.source = re.sub(r'^MODEL = ".*"$', f'MODEL = "{model}"', cell.source, flags=re.M)
    client = nbclient.NotebookClient(
        book, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return book


def outputs(book: Any) -> list[dict[str, Any]]:
    return [o for c in book.cells if c.cell_type == "code" for o in c.outputs]


def raises_on_purpose(cell: Any) -> bool:
    """nbclient's convention: a cell tagged raises-exception may fail and the notebook runs on."""
    return "raises-exception" in cell.get("metadata", {}).get("tags", [])


def unexpected_errors(book: Any) -> list[dict[str, Any]]:
    return [
        o
        for c in book.cells
        if c.cell_type == "code" and not raises_on_purpose(c)
        for o in c.outputs
        if o.output_type == "error"
    ]


def chat_outputs(book: Any) -> list[dict[str, Any]]:
    return [
        o for o in outputs(book) if o.output_type == "display_data" and "foundry" in o.get("metadata", {})
    ]


def test_every_notebook_is_covered() -> None:
    names = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert names >= {
        "01-quick-start.ipynb",
        "02-openai-sdk.ipynb",
        "03-cache-with-pandas.ipynb",
        "04-widgets.ipynb",
    }


def _history(book: Any) -> list[dict[str, str]]:
    """The messages `%foundry history --json` printed."""
    import json

    cell = next(
        c for c in book.cells if c.cell_type == "code" and c.source.strip() == "%foundry history --json"
    )
    return json.loads("".join(o.text for o in cell.outputs if o.output_type == "stream"))


@pytest.mark.parametrize(
    "name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if p.name not in NEEDS_SERVICE)
)
def test_notebook_runs_clean(name: str, cache_copy: Path) -> None:
    # Without the wheel (and no network) the quick start's machinery is still checked, on tiny.
    quick_start_on_tiny = name.startswith("01") and not smollm2_installed()
    book = run_notebook(NOTEBOOKS / name, model="tiny" if quick_start_on_tiny else None)
    assert not unexpected_errors(book)
    assert not [o for o in outputs(book) if o.get("name") == "stderr" and "Traceback" in o.get("text", "")]
    if name.startswith("01"):
        chats = chat_outputs(book)
        assert len(chats) == 3
        assert {o.metadata["foundry"]["model"] for o in chats} == {
            TINY_ID if quick_start_on_tiny else SMOLLM2_ID
        }
        assert all(o.data["text/markdown"] for o in chats)
        if not quick_start_on_tiny:  # a real model: English words, and the JSON cell's answer parses
            assert re.search(r"\b(a|an|the|is|of)\b", chats[0].data["text/plain"].lower())
            assert isinstance(json.loads(chats[2].data["text/plain"])["answer"], str)
        # the second cell continued the first one's conversation: its prompt held the first answer
        assert (
            chats[1].metadata["foundry"]["usage"]["prompt_tokens"]
            > chats[0].metadata["foundry"]["usage"]["total_tokens"]
        )
    if name.startswith("03"):
        assert any(
            "text/html" in o.get("data", {}) and "size_bytes" in o.data["text/html"] for o in outputs(book)
        )
    if name.startswith("05"):
        prompts = [m["content"] for m in _history(book) if m["role"] == "user"]
        assert "Cell 2 ran import pandas as pd" in prompts[0] and "gave 438." in prompts[0]
        assert "DataFrame, 4 rows x 3 columns" in prompts[0] and '{"region": ...}' in prompts[0]
        failed = [
            o for c in book.cells if raises_on_purpose(c) for o in c.outputs if o.output_type == "error"
        ]
        assert [o.ename for o in failed] == ["KeyError"]
        chats = chat_outputs(book)
        assert len(chats) == 4 and {o.metadata["foundry"]["model"] for o in chats} == {TINY_ID}
    if name.startswith("04"):
        views = [o for o in outputs(book) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert len(views) == 3
        assert any(
            "Hello from the chat box" in o.get("data", {}).get("text/plain", "") for o in outputs(book)
        )
