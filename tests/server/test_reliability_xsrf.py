"""Cross-site state changes: a request that carries only the browser's login cookie (as a top-level
navigation from another site does) must not load, unload or download models unless it passes
Jupyter's XSRF check. Requests carrying the token (header or query) keep working with GET, as
Foundry Local's clients use it."""

from __future__ import annotations

import asyncio
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from foundry_jupyter.server.handlers import ROUTES

from .conftest import TINY
from .test_errors import assert_openai_error

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def _state_changing_gets() -> list[str]:
    """Every GET whose route declaration says it changes state, as a request path (`force` set where the
    route takes it, so an unload would really stop a busy model)."""
    paths = []
    for route in ROUTES:
        op = route.operations.get("get")
        if op is not None and op.changes_state:
            forced = "?force=true" if any(q.name == "force" for q in op.query) else ""
            paths.append(route.path.replace("{name}", TINY) + forced)
    return paths


STATE_CHANGING_GETS = _state_changing_gets()


def test_the_lifecycle_gets_are_declared_state_changing():
    assert _state_changing_gets() == [
        f"openai/load/{TINY}",
        f"openai/unload/{TINY}?force=true",
        "openai/unloadall",
    ]


async def cookie_client(root: str, token: str) -> httpx.AsyncClient:
    """A client holding only what a browser holds after logging in: the login and _xsrf cookies."""
    client = httpx.AsyncClient(base_url=root, timeout=60.0)
    page = await client.get("login")
    xsrf = client.cookies.get("_xsrf") or re.search(r'name="_xsrf" value="([^"]+)"', page.text)[1]
    response = await client.post("login", data={"_xsrf": xsrf, "password": token})
    assert response.status_code in (200, 302), response.text
    assert any(name.startswith("username-") for name in client.cookies), dict(client.cookies)
    return client


@pytest.fixture
def root(server, jp_http_port: int, jp_base_url: str) -> str:
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}"


@pytest.mark.parametrize("path", STATE_CHANGING_GETS)
async def test_cookie_only_get_that_changes_state_is_refused(root, token, service, path):
    client = await cookie_client(root, token)
    try:
        response = await client.get("foundry/" + path)
        error = assert_openai_error(response, 403, code="xsrf_check_failed")
        assert "X-XSRFToken" in error["message"]
        assert service.supervisor.loaded() == []
        # Read-only routes still answer a logged-in browser.
        assert (await client.get("foundry/openai/loadedmodels")).status_code == 200
        # Another site's page as the referrer is refused too.
        response = await client.get("foundry/" + path, headers={"Referer": "http://127.0.0.1:1/evil.html"})
        assert_openai_error(response, 403, code="xsrf_check_failed")
    finally:
        await client.aclose()


async def test_cookie_requests_that_pass_the_xsrf_check_change_state(root, token, service):
    client = await cookie_client(root, token)
    try:
        xsrf = client.cookies["_xsrf"]
        response = await client.get(f"foundry/openai/load/{TINY}", headers={"X-XSRFToken": xsrf})
        assert response.status_code == 200, response.text
        assert [r.model_id for r in service.supervisor.loaded()] == [TINY]
        # The sidebar's own page is same-origin: Jupyter's GET rule accepts its Referer.
        response = await client.get(
            f"foundry/openai/unload/{TINY}?force=true", headers={"Referer": root + "lab"}
        )
        assert response.status_code == 200, response.text
        assert service.supervisor.loaded() == []
    finally:
        await client.aclose()


async def test_cookie_only_post_download_is_refused(root, token):
    client = await cookie_client(root, token)
    try:
        response = await client.post("foundry/openai/download", json={"model": "tiny"})
        assert_openai_error(response, 403, code="xsrf_check_failed")
        response = await client.post("foundry/downloads", json={"model": "tiny"})
        assert_openai_error(response, 403, code="xsrf_check_failed")
    finally:
        await client.aclose()


async def test_token_carrying_gets_still_change_state(root, token, http, service):
    response = await http.get(f"openai/load/{TINY}")  # Authorization header
    assert response.status_code == 200, response.text
    async with httpx.AsyncClient(base_url=root, timeout=60.0) as plain:
        response = await plain.get(f"foundry/openai/unloadall?token={token}")  # token in the query
        assert response.status_code == 200, response.text
    assert service.supervisor.loaded() == []


# ---- a real browser, sent over by a page of another origin ----------------------------------------
class _EvilPage(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        body = f'<html><body><a id="go" href="{self.target}">win a prize</a></body></html>'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def evil_site(root: str) -> Iterator[str]:
    handler = type("Page", (_EvilPage,), {"target": f"{root}foundry/openai/load/{TINY}"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


async def test_browser_navigation_from_another_origin_loads_nothing(root, token, service, evil_site):
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(root + "login")
            await page.fill("input[name=password]", token)
            async with page.expect_navigation():
                await page.click("[type=submit]")
            cookies = [c["name"] for c in await page.context.cookies()]
            assert any(name.startswith("username-") for name in cookies), cookies
            await page.goto(evil_site)
            async with page.expect_navigation():
                await page.click("#go")
            text = await page.content()
            assert "xsrf_check_failed" in text, text[:2000]
            await asyncio.sleep(0.2)
            assert service.supervisor.loaded() == []
        finally:
            await browser.close()
