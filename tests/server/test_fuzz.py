"""Property-based fuzzing of every route in our own `openapi.json` (schemathesis + Hypothesis).

For each documented operation, valid and invalid requests are generated from the spec and sent to a
real server with the tiny model in its cache. No answer may be a 5xx; every answer must use a
documented status and content type; every error must be OpenAI-shaped with no traceback in it.

Bounded and reproducible: a few derandomized examples per operation and mode, no shrinking, at most
8 generated tokens per request, loopback only (the model hub is a closed port on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from foundry_jupyter.server.handlers import ROUTES

from .conftest import TINY

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

EXAMPLES = 8  # per operation and generation mode
MAX_TOKENS = 8
LEAKS = re.compile(r'Traceback \(most recent call last\)|File "[^"]+", line \d+|\.py\b')

OPERATIONS = [
    pytest.param(method.upper(), f"/{route.path}", id=f"{method.upper()} /{route.path}")
    for route in ROUTES
    for method in route.operations
]


def openai_error_shape(ctx: Any, response: Any, case: Any) -> bool:
    """Every error answers `{"error": {"message", "type", "param", "code"}}` with a real message and
    nothing from our source files."""
    if response.status_code < 400:
        return True
    text = response.text
    assert not LEAKS.search(text), f"the error body leaks internals: {text[:500]}"
    if case.method == "HEAD":
        return True
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), text[:200]
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, text[:500]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, text[:500]
    assert isinstance(error["message"], str) and len(error["message"]) > 10, text[:500]
    assert isinstance(error["type"], str) and error["type"], text[:500]
    return True


def _bounded(case: Any, use_tiny: bool) -> None:
    """Keep generation short, and aim some requests at the cached tiny model so that they go past the
    model lookup into loading and generation."""
    body = case.body
    if isinstance(body, dict):
        for key in ("max_tokens", "max_completion_tokens"):
            value = body.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_TOKENS:
                body[key] = MAX_TOKENS
        if use_tiny and isinstance(body.get("model"), str):
            body["model"] = TINY
    if use_tiny and isinstance(case.path_parameters, dict) and "name" in case.path_parameters:
        case.path_parameters["name"] = TINY


def _fuzz(operation: Any, url: str, token: str) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, openai_error_shape]
    headers = {"Authorization": f"Bearer {token}"}
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode), use_tiny=st.booleans())
        def run(case: Any, use_tiny: bool) -> None:
            _bounded(case, use_tiny)
            response = case.call(base_url=url, headers=headers, timeout=60)
            case.validate_response(response, checks=checks)

        run()


@pytest.fixture
def foundry_config() -> dict:
    return {"runner_start_timeout": 60.0}


@pytest.fixture
def closed_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """A download of a catalog model fails at once on a closed loopback port instead of going out."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
async def test_fuzz_operation(method, path, http, base_url, token, closed_hub):
    spec = (await http.get("openapi.json")).json()
    schema = schemathesis.openapi.from_dict(spec)
    operation = schema[path][method]
    # The fuzzer's client is synchronous: it runs in a thread while this loop serves the requests.
    await asyncio.to_thread(_fuzz, operation, base_url.rstrip("/"), token)
