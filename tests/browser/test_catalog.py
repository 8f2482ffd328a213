"""The sidebar's catalog grouped by alias, its diagnostics button, and answers' dollars, in a real browser.

Screenshots go to docs/img/ (shown in the README) as well as test-artifacts/.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .conftest import HUB_ALIAS, HUB_ID, Lab, open_panel

pytestmark = pytest.mark.timeout(240)

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
PHI_CPU = "Phi-3.5-mini-instruct-generic-cpu:1"
PHI_GPU = "Phi-3.5-mini-instruct-cuda-gpu:1"


def _save(locator, artifacts: Path, name: str) -> None:
    locator.screenshot(path=str(artifacts / name))
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifacts / name, DOCS_IMG / name)


def test_catalog_groups_variants_by_alias(page, lab: Lab, artifacts: Path) -> None:
    open_panel(page, lab)
    catalog = page.locator('.jp-FoundryPanel [data-section="catalog"]')
    phi = catalog.locator('.jp-FoundryPanel-group[data-alias="phi-3.5-mini"]')
    phi.wait_for()

    # Each alias once, in the server's order, however many variants it has.
    aliases = catalog.locator(".jp-FoundryPanel-group").evaluate_all("gs => gs.map(g => g.dataset.alias)")
    entries = lab.api("foundry/foundry/list").json()
    expected = sorted({e["alias"].lower(): e["alias"] for e in entries}.values(), key=str.lower)
    assert aliases == expected and len(aliases) < len(entries)
    assert catalog.locator("summary .jp-FoundryPanel-count").inner_text() == str(len(expected))

    # The variant this CPU-only machine uses shows; the GPU one waits behind the disclosure.
    chosen = phi.locator(".jp-FoundryPanel-row").first
    assert chosen.get_attribute("data-model-id") == PHI_CPU
    gpu = phi.locator(f'[data-model-id="{PHI_GPU}"]')
    assert not gpu.is_visible()
    disclosure = phi.locator(".jp-FoundryPanel-variants > summary")
    assert disclosure.inner_text() == "1 other variant"
    disclosure.click()
    gpu.wait_for()
    assert "cannot run here" in gpu.inner_text()
    assert "jp-mod-unrunnable" in (gpu.get_attribute("class") or "")
    assert "cannot run here" not in chosen.inner_text()

    # Single-variant aliases have no disclosure; the tiny model is cached.
    tiny = catalog.locator('.jp-FoundryPanel-group[data-alias="tiny"]')
    assert tiny.locator(".jp-FoundryPanel-variants").count() == 0
    tiny.locator(".jp-FoundryPanel-badge", has_text="cached").wait_for()
    assert catalog.locator(f'[data-alias="{HUB_ALIAS}"] [data-model-id="{HUB_ID}"]').count() == 1

    catalog.evaluate("node => node.scrollIntoView()")
    _save(page.locator(".jp-FoundryPanel"), artifacts, "catalog.png")


def test_diagnostics_button_downloads_a_zip_without_the_token(page, lab: Lab, artifacts: Path) -> None:
    open_panel(page, lab)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download diagnostics").click()
    download = info.value
    assert download.suggested_filename.startswith("foundry-logs-")
    saved = artifacts / "diagnostics.zip"
    download.save_as(str(saved))
    data = saved.read_bytes()
    assert lab.token.encode() not in data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        texts = [archive.read(n).decode() for n in names]
    assert {"hardware.json", "catalog.json", "cache.json", "versions.json", "loaded.json"} <= set(names)
    assert all(lab.token not in text for text in texts)
    assert page.locator(".jp-FoundryPanel-error").count() == 0


NOTEBOOK_CELLS = [
    # What %%foundry shows for an answer quoting two prices, through the real result object.
    "from foundry_jupyter.kernel.results import ChatResult\n"
    "ChatResult('Lunch was $5 and dinner $10. Einstein: $$E = mc^2$$', 'demo:1')",
    # The same text as raw Markdown: Jupyter's renderer turns it into math (what the escape avoids).
    "from IPython.display import Markdown\nMarkdown('Lunch was $5 and dinner $10.')",
]


def test_answers_quoting_prices_do_not_render_as_math(page, lab: Lab, artifacts: Path) -> None:
    notebook = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
            for src in NOTEBOOK_CELLS
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    answer = lab.api("api/contents/dollars.ipynb", "PUT", {"type": "notebook", "content": notebook})
    assert answer.status_code in (200, 201), answer.text
    # A kernel already running for it: Lab attaches to it instead of asking which to start.
    session = {"path": "dollars.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}}
    answer = lab.api("api/sessions", "POST", session)
    assert answer.status_code == 201, answer.text
    page.goto(f"{lab.url}lab/tree/dollars.ipynb?reset&token={lab.token}")
    page.wait_for_url(lambda url: "reset" not in url)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
    outputs = page.locator(".jp-OutputArea .jp-RenderedMarkdown")
    editors = page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor")
    for index in range(len(NOTEBOOK_CELLS)):  # run each cell as a user does, waiting for its output
        for attempt in range(3):  # a key press while Lab is still settling can be lost: press again
            dialog = page.locator(".jp-Dialog")
            if dialog.count():  # Lab may still ask which kernel to use: the one it proposes
                dialog.locator("button.jp-mod-accept").click()
                dialog.wait_for(state="detached")
            try:
                editors.nth(index).click(timeout=10_000)
                page.keyboard.press("Shift+Enter")
                outputs.nth(index).wait_for(timeout=20_000)
                break
            except PlaywrightTimeout:  # the click or the key press was lost
                page.screenshot(path=str(artifacts / f"dollars-attempt-{index}-{attempt}.png"))
        outputs.nth(index).wait_for()
    ours, raw = outputs.nth(0), outputs.nth(1)
    raw.locator("mjx-container, .MathJax").first.wait_for()  # the renderer does typeset $...$

    # Our answer: the prices read as prices; only the model's display math is typeset.
    assert "Lunch was $5 and dinner $10." in ours.inner_text()
    ours.locator("mjx-container").first.wait_for()
    assert ours.locator("mjx-container").count() == 1
    assert "\\$" not in ours.inner_text() and "<span>" not in ours.inner_text()
    page.locator(".jp-Notebook").evaluate("node => node.scrollTo(0, 0)")
    _save(page.locator(".jp-NotebookPanel"), artifacts, "dollars.png")
