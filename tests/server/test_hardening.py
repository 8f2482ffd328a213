"""Requests the spec-driven fuzzer does not generate: raw bodies, odd verbs, paths as model names,
execution providers that are not names, and a refused Host header."""

from __future__ import annotations

import json

import pytest

from .conftest import TINY
from .test_errors import assert_openai_error

pytestmark = pytest.mark.usefixtures("each_transport")  # every test: unix socket, then TCP

MSG = [{"role": "user", "content": "Hello"}]
ROUTES = [
    "v1/models",
    "v1/models/tiny",
    "v1/chat/completions",
    "v1/chat/completions/tokenizer/encode/count",
    "v1/completions",
    "openai/status",
    "foundry/list",
    "foundry/resolve/no-such-model",
    "openai/models",
    "openai/download",
    "openai/load/no-such-model",
    "openai/unload/no-such-model",
    "openai/unloadall",
    "openai/loadedmodels",
    "openapi.json",
    "hardware",
    "cache",
    "cache/no-such-model",
    "loaded",
    "downloads",
    "downloads/dl-nothing",
    "v1/responses",
    "v1/responses/resp_nothing",
    "v1/responses/resp_nothing/input_items",
]


async def test_ten_megabyte_body(http):
    big = {"model": "no-such-model:1", "messages": [{"role": "user", "content": "x" * 10_000_000}]}
    response = await http.post("v1/chat/completions", content=json.dumps(big).encode())
    assert_openai_error(response, 404, code="model_not_found")
    broken = b'{"model": "' + b"x" * 10_000_000
    assert_openai_error(await http.post("v1/chat/completions", content=broken), 400)


async def test_text_plain_json_is_read_as_json(http):
    body = {"model": TINY, "messages": MSG}
    response = await http.post(
        "v1/chat/completions/tokenizer/encode/count",
        content=json.dumps(body),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["tokenCount"] > 0


async def test_post_without_body_or_content_length(http):
    request = http.build_request("POST", "v1/chat/completions")
    request.headers.pop("Content-Length", None)
    response = await http.send(request)
    assert "empty" in assert_openai_error(response, 400)["message"]


@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE", "PATCH"])
async def test_other_verbs_on_every_route(http, method):
    for path in ROUTES:
        response = await http.request(method, path)
        assert response.status_code in (200, 404, 405), (method, path, response.status_code)
        if response.status_code == 405:
            assert response.headers["allow"]
        if method != "HEAD" and response.status_code >= 400:
            assert_openai_error(response, response.status_code)


async def test_options_is_answered_without_error(http):
    for path in ROUTES:
        response = await http.options(path)
        assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize(
    "path", ["v1/models/{}", "openai/load/{}", "openai/unload/{}", "openai/unload/{}?force=true"]
)
async def test_url_encoded_ids(http, path):
    response = await http.get(path.format("tiny-generic-cpu%3A1"))
    assert response.status_code == 200, response.text
    assert TINY in response.text
    missing = await http.get(path.format("org%2Fno-such%3A1"))
    assert "org/no-such:1" in assert_openai_error(missing, 404, code="model_not_found")["message"]
    await http.get("openai/unloadall")


@pytest.mark.parametrize("name", ["~", "%2Ftmp", "..%2F..", "%2E", "%2E%2E%2F%2E%2E%2Fetc", "~%2Fmodels"])
async def test_folder_paths_are_not_model_names(http, name):
    for method, path in (
        ("GET", f"v1/models/{name}"),
        ("GET", f"openai/load/{name}"),
        ("GET", f"openai/unload/{name}"),
        ("DELETE", f"cache/{name}"),
    ):
        response = await http.request(method, path)
        error = assert_openai_error(response, 400, code="invalid_model_name")
        assert "alias" in error["message"] and "genai_config" not in error["message"]


async def test_folder_paths_in_bodies(http, tmp_path):
    for route, body in (
        ("v1/chat/completions", {"model": str(tmp_path), "messages": MSG}),
        ("v1/completions", {"model": "~", "prompt": "Hi"}),
        ("v1/chat/completions/tokenizer/encode/count", {"model": "../..", "messages": MSG}),
        ("openai/download", {"model": str(tmp_path)}),
        ("downloads", {"model": str(tmp_path)}),
    ):
        response = await http.post(route, json=body)
        assert str(tmp_path) not in response.text or "looks like a folder" in response.text
        assert_openai_error(response, 400, code="invalid_model_name", param="model")


@pytest.mark.parametrize("ep", ["a\x00b", "cpu; rm", "x" * 100, "\n"])
async def test_execution_provider_must_be_a_name(http, ep):
    body = {"model": TINY, "messages": MSG, "max_tokens": 2, "ep": ep}
    response = await http.post("v1/chat/completions", json=body)
    assert_openai_error(response, 400, param="ep")
    body = {"model": TINY, "prompt": "Hi", "max_tokens": 2, "ep": ep}
    assert_openai_error(await http.post("v1/completions", json=body), 400, param="ep")
    assert (await http.get("openai/loadedmodels")).json() == []


async def test_unknown_execution_provider_on_load(http):
    error = assert_openai_error(await http.get("openai/load/tiny?ep=a%22b"), 400, param="ep")
    assert "cpu" in error["message"]


async def test_non_utf8_in_the_path(http):
    assert_openai_error(await http.get("v1/models/%ff%fe"), 400, code="invalid_request")


async def test_refused_host_is_not_reported_as_a_bad_token(http):
    response = await http.get("openai/status", headers={"Host": "evil.example"})
    error = assert_openai_error(response, 403, code="host_not_allowed")
    assert "allow_remote_access" in error["message"]
