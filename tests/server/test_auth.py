"""No route under the prefix answers without the Jupyter token: enumerated from the app itself."""

from __future__ import annotations

import re

import pytest
from tornado.routing import PathMatches

from foundry_jupyter.server.base import FoundryHandler
from foundry_jupyter.server.handlers import ROUTES

VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SAMPLE = {
    "name": "tiny",
    "job_id": "dl-000000",
    "response_id": "resp_0",
    "engine": "gpu",
    "rest": "anything/at/all",
}


def foundry_routes(server) -> list[tuple[str, type]]:
    """(concrete path, handler) for every rule the web app serves under /foundry/."""
    routes = []
    for rule in _rules(server.web_app.default_router):
        matcher, target = rule.matcher, rule.target
        if not (isinstance(matcher, PathMatches) and isinstance(target, type)):
            continue
        pattern = matcher.regex.pattern.rstrip("$")
        if "/foundry/" not in pattern:
            continue
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)(?:\([^)]*\)\*)?\)?", lambda m: SAMPLE[m.group(1)], pattern)
        routes.append((path.replace("\\", ""), target))
    return routes


def _rules(router):
    for rule in getattr(router, "rules", []):
        yield rule
        yield from _rules(rule.target)


def test_the_server_serves_exactly_the_route_table(server):
    routes = foundry_routes(server)
    assert [handler for _path, handler in routes] == [route.handler for route in ROUTES]
    for path, handler in routes:
        assert issubclass(handler, FoundryHandler), (path, handler)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.operations], ids=lambda r: r.path)
def test_each_route_documents_the_methods_its_handler_serves(route):
    assert sorted(m.upper() for m in route.operations) == sorted(route.handler.allowed_methods())


@pytest.mark.parametrize("credentials", [None, "Bearer wrong-token", "token wrong-token"])
async def test_no_route_answers_without_a_valid_token(server, jp_http_port, anon, credentials):
    routes = foundry_routes(server)
    checked = 0
    for path, _handler in routes:
        for verb in VERBS:
            headers = {"Authorization": credentials} if credentials else {}
            response = await anon.request(
                verb, f"http://127.0.0.1:{jp_http_port}{path}", headers=headers, content=b"{}"
            )
            assert response.status_code in (401, 403), (verb, path, response.status_code, response.text)
            assert "error" in response.json()
            checked += 1
    assert checked == len(routes) * len(VERBS)


async def test_bearer_and_token_schemes_both_work(http, token):
    for scheme in ("Bearer", "token", "bearer"):
        response = await http.get("openai/status", headers={"Authorization": f"{scheme} {token}"})
        assert response.status_code == 200, scheme


async def test_missing_token_is_401_in_openai_shape(anon):
    response = await anon.get("v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["www-authenticate"].startswith("Bearer")
