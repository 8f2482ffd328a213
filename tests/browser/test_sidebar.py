"""The sidebar in a real browser: open it, load the tiny model from the cache, see it loaded, unload it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.support.hub import HubServer

from .conftest import HUB_ALIAS, HUB_ID, HUB_SUBFOLDER, Lab, open_panel

pytestmark = pytest.mark.timeout(240)

TINY = "tiny-generic-cpu:1"


@pytest.fixture
def page(page, lab: Lab):
    """The conftest's page, with the sidebar panel already open."""
    open_panel(page, lab)
    return page


def test_load_and_unload_from_the_sidebar(page, lab: Lab, artifacts: Path) -> None:
    panel = page.locator(".jp-FoundryPanel")
    cached = panel.locator(f'[data-section="cached"] [data-model-id="{TINY}"]')
    loaded_section = panel.locator('[data-section="loaded"]')
    loaded = loaded_section.locator(f'[data-model-id="{TINY}"]')

    # Real data from the server: the endpoint under this server, the cache, the usable CPU provider.
    expect_text(panel.locator(".jp-FoundryPanel-endpoint"), f"{lab.url}foundry/v1")
    cached.wait_for()
    assert "tiny" in cached.locator(".jp-FoundryPanel-alias").inner_text()
    panel.locator(".jp-FoundryPanel-chip.jp-mod-usable", has_text="cpu").wait_for()
    loaded_section.get_by_text("No model is loaded").wait_for()

    cached.get_by_role("button", name=f"Load {TINY}").click()
    loaded.wait_for()
    assert re.search(r"TTL \d+m \d{2}s|TTL \d+s", loaded.inner_text()), loaded.inner_text()
    assert lab.api("foundry/loaded").json()["models"][0]["id"] == TINY
    assert panel.locator(".jp-FoundryPanel-error").count() == 0

    panel.evaluate("node => node.scrollTo(0, 0)")  # clicking scrolled the panel to the button
    panel.screenshot(path=str(artifacts / "sidebar.png"))

    loaded.get_by_role("button", name=f"Unload {TINY}").click()
    loaded.wait_for(state="detached")
    loaded_section.get_by_text("No model is loaded").wait_for()
    assert lab.api("foundry/loaded").json()["models"] == []


def test_server_errors_are_shown(page, lab: Lab) -> None:
    """The download command, from the palette, with an alias the catalog lacks: the server's message."""
    run_command(page, "Foundry: Download Model by Alias")
    dialog = page.locator(".jp-Dialog")
    dialog.locator("input").fill("no-such-model")
    dialog.get_by_role("button", name=re.compile("^Ok$", re.IGNORECASE)).click()
    error = page.locator(".jp-FoundryPanel-error")
    error.wait_for()
    assert "no-such-model" in error.inner_text()
    error.get_by_role("button", name="Dismiss").click()
    error.wait_for(state="detached")


def expect_text(locator, text: str) -> None:
    locator.wait_for()
    assert locator.inner_text().strip() == text


def test_follows_the_dark_theme(page, lab: Lab, artifacts: Path) -> None:
    panel = page.locator(".jp-FoundryPanel")
    panel.locator('[data-section="cached"] .jp-FoundryPanel-row').first.wait_for()
    light = panel.evaluate("node => getComputedStyle(node).backgroundColor")
    set_theme(lab, "JupyterLab Dark")
    try:
        open_panel(page, lab)
        page.locator("body[data-jp-theme-light='false']").wait_for(state="attached")
        page.wait_for_function(
            "light => getComputedStyle(document.querySelector('.jp-FoundryPanel')).backgroundColor !== light",
            arg=light,
        )
        panel.locator('[data-section="cached"] .jp-FoundryPanel-row').first.wait_for()
        panel.screenshot(path=str(artifacts / "sidebar-dark.png"))
    finally:
        set_theme(lab, "JupyterLab Light")  # a saved setting: the next test starts light again


def set_theme(lab: Lab, theme: str) -> None:
    answer = lab.api(
        "lab/api/settings/@jupyterlab/apputils-extension:themes",
        method="PUT",
        json={"raw": json.dumps({"theme": theme})},
    )
    assert answer.status_code == 204, answer.text


def run_command(page, label: str) -> None:
    """Runs a command from the palette as a user does: type its label, click the match."""
    search = page.locator(".lm-CommandPalette-input")
    # The shortcut toggles the palette: press again only when a press was clearly lost.
    for _ in range(3):
        page.keyboard.press("Control+Shift+C")
        try:
            search.wait_for(timeout=5000)
            break
        except PlaywrightTimeout:
            continue
    search.fill(label)
    page.locator(".lm-CommandPalette-item", has_text=label).first.click()


def test_download_from_the_catalog_then_remove(page, lab: Lab, hub: HubServer) -> None:
    hub.slow(f"{HUB_SUBFOLDER}/model.onnx", 0.1)  # a few seconds: long enough to watch, still bounded
    panel = page.locator(".jp-FoundryPanel")
    catalog = panel.locator('[data-section="catalog"]')
    catalog.get_by_label("Filter the catalog").fill(HUB_ALIAS)
    row = catalog.locator(f'[data-model-id="{HUB_ID}"]')
    row.get_by_role("button", name=f"Download {HUB_ID}").click()

    # Live progress, polled from the server while the transfer runs.
    download = panel.locator('[data-section="downloads"] .jp-FoundryPanel-download').first
    download.locator(".jp-FoundryPanel-progress").wait_for()
    assert re.search(r"\d+\.\d%", download.inner_text()), download.inner_text()
    row.locator(".jp-FoundryPanel-progress").wait_for()

    # Done: the model is in the cache list and the catalog calls it cached.
    panel.locator(f'[data-section="cached"] [data-model-id="{HUB_ID}"]').wait_for()
    row.locator(".jp-FoundryPanel-badge", has_text="cached").wait_for()
    download.locator(".jp-mod-done").wait_for()
    assert any(m["id"] == HUB_ID for m in lab.api("foundry/cache").json()["models"])

    # Remove asks first; confirmed, the model leaves the cache and the catalog offers it again.
    cached = panel.locator(f'[data-section="cached"] [data-model-id="{HUB_ID}"]')
    cached.get_by_role("button", name=f"Remove {HUB_ID}").click()
    dialog = page.locator(".jp-Dialog")
    assert HUB_ID in dialog.inner_text()
    dialog.get_by_role("button", name="Remove").click()
    cached.wait_for(state="detached")
    row.get_by_role("button", name=f"Download {HUB_ID}").wait_for()
    assert all(m["id"] != HUB_ID for m in lab.api("foundry/cache").json()["models"])
