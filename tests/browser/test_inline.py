"""Inline completion in a real browser: typing in a notebook cell shows ghost text from the tiny model
(through `POST foundry/v1/completions`), and Tab accepts it into the cell."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import Lab

pytestmark = pytest.mark.timeout(240)

WAIT_MS = 60_000  # the first request starts a runner process: generous, but bounded
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def notebook(*sources: str) -> dict:
    cells = [
        {"cell_type": "code", "source": s, "metadata": {}, "outputs": [], "execution_count": None}
        for s in sources
    ]
    return {
        "type": "notebook",
        "format": "json",
        "content": {
            "cells": cells,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        },
    }


def cell_text(cell) -> str:
    """An editor's text as CodeMirror shows it (one line per `.cm-line`)."""
    return "\n".join(cell.locator(".cm-line").all_inner_texts())


def test_typing_shows_ghost_text_and_tab_accepts_it(browser, lab: Lab, artifacts: Path) -> None:
    above = "import json\n\nrecords = [json.loads(line) for line in open('data.jsonl')]"
    assert lab.api("api/contents/ghost.ipynb", "PUT", notebook(above, "")).status_code in (200, 201)
    context = browser.new_context(viewport={"width": 1100, "height": 560}, color_scheme="light")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    requests: list[dict] = []

    def note(request) -> None:
        if request.method == "POST" and "/foundry/v1/" in request.url:
            requests.append({"url": request.url, **json.loads(request.post_data or "{}")})

    page.on("request", note)
    page.goto(f"{lab.url}lab/tree/ghost.ipynb?reset&token={lab.token}")
    page.wait_for_url(lambda url: "reset" not in url)
    cells = page.locator(".jp-Notebook .jp-Cell")
    cells.nth(1).locator(".cm-content").click()
    page.keyboard.type("print(rec", delay=40)  # each keystroke aborts the previous request

    ghost = page.locator(".jp-GhostText")
    ghost.wait_for(state="visible")
    page.wait_for_function(
        "() => !document.querySelector('.jp-GhostText-streamingIndicator')", timeout=WAIT_MS
    )
    suggestion = ghost.inner_text()
    assert suggestion.strip(), "the ghost text is empty"
    page.mouse.move(700, 500)  # no hover: the inline completer's toolbar stays hidden
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "ghost-text.png"))
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifacts / "ghost-text.png", DOCS_IMG / "ghost-text.png")

    # What the server was asked: the cell above and the text up to the cursor, greedy, streamed; the
    # tiny model has FIM tokens, so the text after the cursor went as suffix (empty here, so not sent).
    assert requests, "no request went to v1/completions"
    last = requests[-1]
    assert last["url"].split("?")[0].endswith("/foundry/v1/completions")
    assert last["model"] == "tiny-generic-cpu:1" and last["stream"] is True and last["temperature"] == 0
    assert last["prompt"].startswith("import json") and last["prompt"].endswith("print(rec")

    page.keyboard.press("Tab")
    ghost.wait_for(state="detached")
    typed = cell_text(cells.nth(1))
    flat = re.sub(r"\s+", "", typed)
    assert flat == re.sub(r"\s+", "", "print(rec" + suggestion), (typed, suggestion)
    context.close()
