"""The sidebar shows a registered engine's models beside the cached ones, with the engine and its health.

The screenshot goes to docs/img/remote.png (shown in the README and docs/deploy.md) as well as
test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.fake_engine import JsonHandler, serve

from .conftest import Lab, open_panel

pytestmark = pytest.mark.timeout(240)
BUILT = Path(__file__).resolve().parents[2] / "foundry_jupyter" / "labextension"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


class _Models(JsonHandler):
    def do_GET(self) -> None:
        self.send_json(200, {"object": "list", "data": [{"id": "meta-llama/Llama-3.1-8B-Instruct"}]})


@pytest.fixture(scope="module", autouse=True)
def _this_checkouts_labextension(tmp_path_factory: pytest.TempPathFactory):
    """Lab serves the labextension built in this checkout (an installed one may be another build)."""
    if not (BUILT / "package.json").is_file():
        yield
        return
    extra = tmp_path_factory.mktemp("jupyter-path")
    (extra / "labextensions").mkdir()
    (extra / "labextensions" / "foundry-jupyter").symlink_to(BUILT)
    saved = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(extra), saved) if p)
    yield
    if saved is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = saved


@pytest.fixture
def engine():
    with serve(_Models) as url:
        yield f"{url}/v1"


def test_remote_models_show_next_to_local_ones(browser, lab: Lab, engine: str, artifacts: Path) -> None:
    body = {"name": "gpu", "base_url": engine, "aliases": {"llama-8b": "meta-llama/Llama-3.1-8B-Instruct"}}
    registered = lab.api("foundry/openai/register", "POST", body)
    assert registered.status_code == 200, registered.text
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        open_panel(page, lab)
        remote = page.locator(
            '.jp-FoundryPanel-row[data-model-id="gpu/meta-llama/Llama-3.1-8B-Instruct"]'
        ).first
        remote.wait_for(state="visible")
        text = remote.inner_text()
        assert "remote" in text and "gpu" in text and "ok" in text and "llama-8b" in text
        rows = page.locator('.jp-FoundryPanel-row[data-model-id="gpu/meta-llama/Llama-3.1-8B-Instruct"]')
        assert rows.count() == 2  # cached models and catalog
        assert "cannot run here" not in rows.last.inner_text()  # it runs on its engine
        page.locator('.jp-FoundryPanel-row[data-model-id="tiny-generic-cpu:1"]').first.wait_for(
            state="visible"
        )
        page.locator(".jp-FoundryPanel").screenshot(path=str(artifacts / "remote.png"))
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifacts / "remote.png", DOCS_IMG / "remote.png")
    finally:
        context.close()
