"""A real `jupyter lab` with the extension and the tiny model in its cache, and headless Chromium on it.

Lab runs as its own process on 127.0.0.1 with a token, an isolated settings, workspaces and runtime
folder, and a copy of the tiny-model cache. Chromium is Debian's (`apt-get install chromium`), driven
by Playwright through `executable_path`: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.models.helpers import entry as catalog_entry
from tests.support.hub import HubServer

CHROMIUM = Path(os.environ.get("FOUNDRY_JUPYTER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HUB_REPO = "org/tiny-onnx"
HUB_SUBFOLDER = "cpu/tiny"
HUB_NAME = "tinyhub-generic-cpu"
HUB_ALIAS = "tinyhub"
HUB_ID = f"{HUB_NAME}:1"
START_TIMEOUT_S = 90
WAIT_MS = 60_000  # the first load starts a runner process: generous, but bounded


@dataclass
class Lab:
    url: str  # the server's base URL, ending in "/"
    token: str
    log: Path
    cache: Path  # the server's model cache: a test may add a model folder to it

    def api(self, path: str, method: str = "GET", json: object = None) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.url}{path}",
            headers={"Authorization": f"token {self.token}"},
            json=json,
            timeout=30,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOCAL_BUILD = Path(__file__).resolve().parents[2] / "foundry_jupyter" / "labextension"


def _labextension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return (LOCAL_BUILD / "package.json").is_file() or any(
        (Path(p) / "foundry-jupyter" / "package.json").is_file() for p in jupyter_path("labextensions")
    )


def _jupyter_path_with_local_build(root: Path) -> str:
    """A JUPYTER_PATH whose first labextensions folder holds this checkout's build, when there is one:
    Lab serves the first copy of an extension it finds, and an installed copy may be older."""
    paths = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    if (LOCAL_BUILD / "package.json").is_file():
        labextensions = root / "jupyter-path" / "labextensions"
        labextensions.mkdir(parents=True)
        (labextensions / "foundry-jupyter").symlink_to(LOCAL_BUILD, target_is_directory=True)
        paths.insert(0, str(root / "jupyter-path"))
    return os.pathsep.join(paths)


def _write_settings(settings: Path) -> None:
    # No news toast or update check over the panel in screenshots; no network use either.
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # lets the extension stop its model runners
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _assert_no_runner_left(cache: Path) -> None:
    """Model runners run in their own session; stopping Lab must still have stopped ours."""
    import psutil

    def ours() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(p.info["cmdline"] or [])
            if "foundry_jupyter.runner" in cmdline and str(cache) in cmdline:
                found.append(p)
        return found

    deadline = time.monotonic() + 15
    while (left := ours()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for p in left:
        p.kill()
    assert not left, f"model runners outlived jupyter lab: {[p.pid for p in left]}"


@pytest.fixture(scope="module")
def hub(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A Hugging Face imitation on 127.0.0.1 serving the tiny model as HUB_REPO/HUB_SUBFOLDER."""
    repo = tmp_path_factory.mktemp("hub-repo")
    shutil.copytree(tiny_model_dir, repo / HUB_SUBFOLDER)
    with HubServer({HUB_REPO: repo}) as server:
        yield server


@pytest.fixture(scope="module")
def lab(tiny_cache_dir: Path, hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not _labextension_installed():
        pytest.skip("the foundry-jupyter labextension is not built (pip install without Node?)")
    root = tmp_path_factory.mktemp("lab")
    cache = root / "cache" / "models"
    shutil.copytree(tiny_cache_dir, cache)
    settings = root / "settings"
    _write_settings(settings)
    # One catalog entry more, downloadable from the hub imitation (the real catalog's are not, offline).
    hub_entry = catalog_entry(HUB_NAME, HUB_ALIAS)
    hub_entry["source"] = {"kind": "huggingface", "repo": HUB_REPO, "subfolder": HUB_SUBFOLDER}
    catalog = root / "catalog.json"
    catalog.write_text(json.dumps({"models": [hub_entry]}))
    token = secrets.token_hex(16)
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"},
        "FOUNDRY_JUPYTER_CACHE": str(cache),
        "FOUNDRY_JUPYTER_CATALOGS": str(catalog),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_PATH": _jupyter_path_with_local_build(root),
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    log = root / "lab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--allow-root",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={root / 'workspaces'}",
        "--LabServerApp.open_browser=False",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    lab = Lab(url=f"http://127.0.0.1:{port}/", token=token, log=log, cache=cache)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if lab.api("api/status").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer in {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield lab
    finally:
        _stop(proc)
    _assert_no_runner_left(cache)


@pytest.fixture
def browser() -> Iterator[object]:
    # Function-scoped on purpose: pytest-jupyter's autouse `jp_asyncio_loop` closes the current
    # event loop after each test, which must not be the one sync Playwright is still running.
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def page(browser, lab: Lab) -> Iterator[object]:
    """A fresh page on Lab; the test fails on an uncaught exception from the extension in it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    # An uncaught exception in the page is a bug even when the flow passed.
    assert not [e for e in errors if "foundry" in e.lower()], errors


def open_panel(page, lab: Lab) -> None:
    """Loads Lab and opens the sidebar panel by its tab, as a user does."""
    # `reset`: start from the default layout, not the one the layout restorer saved last test.
    page.goto(f"{lab.url}lab?reset&token={lab.token}")
    # Lab drops `reset` from the address once restored: key presses before that can be lost.
    page.wait_for_url(lambda url: "reset" not in url)
    page.locator('.lm-TabBar-tab[data-id="foundry-jupyter-panel"]').click()
    page.locator(".jp-FoundryPanel").wait_for(state="visible")
