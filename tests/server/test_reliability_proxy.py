"""Requests for a remote engine's model (ENGINE/MODEL) meet the same limits as local ones before
anything is sent to the engine: the body size limit, the bound on JSON nesting, strict types for the
fields the proxy reads, and Jupyter's XSRF check for cookie-only requests."""

from __future__ import annotations

import json

import pytest

from .test_errors import assert_openai_error
from .test_reliability_xsrf import cookie_client
from .test_remote_faults import KEY, KEY_ENV, FakeEngine, fake_engine  # noqa: F401 (fixture)

LIMIT = 1_000_000
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def foundry_config(fake_engine: FakeEngine, monkeypatch) -> dict:  # noqa: F811
    monkeypatch.setenv(KEY_ENV, KEY)
    engine = {"name": "fake", "base_url": f"http://127.0.0.1:{fake_engine.port}/v1", "api_key_env": KEY_ENV}
    return {"remote_engines": [engine], "max_body_size": LIMIT}


@pytest.mark.parametrize("path", ["v1/chat/completions", "v1/completions"])
async def test_a_remote_request_meets_the_local_limits(http, fake_engine, path):  # noqa: F811
    prompt = {"messages": MSG} if "chat" in path else {"prompt": "hi"}
    big = {"model": "fake/echo", **prompt, "padding": "x" * (LIMIT + 1)}
    assert_openai_error(await http.post(path, content=json.dumps(big)), 413, code="request_too_large")
    deep = '{"model": "fake/echo", "extra": ' + "[" * 3000 + "]" * 3000 + "}"
    error = assert_openai_error(await http.post(path, content=deep), 400)
    assert "nested" in error["message"]
    assert_openai_error(await http.post(path, json={"model": "fake/echo", **prompt, "stream": "yes"}), 400)
    assert fake_engine.requests == []
    # Within the limits the engine answers.
    response = await http.post(path, json={"model": "fake/echo", **prompt, "max_tokens": 2})
    assert response.status_code == 200, response.text
    assert len(fake_engine.requests) == 1


async def test_a_cookie_only_remote_request_must_pass_the_xsrf_check(
    server,
    jp_http_port,
    jp_base_url,
    token,
    fake_engine,  # noqa: F811
):
    client = await cookie_client(f"http://127.0.0.1:{jp_http_port}{jp_base_url}", token)
    try:
        body = {"model": "fake/echo", "messages": MSG}
        response = await client.post("foundry/v1/chat/completions", json=body)
        assert_openai_error(response, 403, code="xsrf_check_failed")
        response = await client.post("foundry/openai/register", json={"name": "x", "base_url": "http://h/v1"})
        assert_openai_error(response, 403, code="xsrf_check_failed")
    finally:
        await client.aclose()
    assert fake_engine.requests == []
