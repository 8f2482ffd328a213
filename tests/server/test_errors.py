"""Every caller mistake answers 4xx in the OpenAI error shape, with a message and no traceback."""

from __future__ import annotations

import json

import pytest

from .conftest import TINY

MSG = [{"role": "user", "content": "Hello"}]


def assert_openai_error(response, status: int, *, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    assert "Traceback" not in response.text and ".py" not in response.text
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"messages": MSG}, "model", "Missing"),
        ({"model": TINY}, "messages", "Missing"),
        ({"model": TINY, "messages": []}, "messages", "at least 1"),
        ({"model": TINY, "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role", "user"),
        ({"model": TINY, "messages": [{"content": "x"}]}, "messages.0.role", "Missing"),
        ({"model": TINY, "messages": "hello"}, "messages", "list"),
        ({"model": TINY, "messages": MSG, "max_tokens": "many"}, "max_tokens", "integer"),
        ({"model": TINY, "messages": MSG, "max_tokens": 0}, "max_tokens", "greater than"),
        ({"model": TINY, "messages": MSG, "max_tokens": -1}, "max_tokens", "greater than"),
        ({"model": TINY, "messages": MSG, "max_completion_tokens": 0}, "max_completion_tokens", "greater"),
        ({"model": TINY, "messages": MSG, "temperature": -0.5}, "temperature", "greater"),
        ({"model": TINY, "messages": MSG, "temperature": 2.5}, "temperature", "less"),
        ({"model": TINY, "messages": MSG, "top_p": 1.5}, "top_p", "less"),
        ({"model": TINY, "messages": MSG, "top_k": 0}, "top_k", "greater"),
        ({"model": TINY, "messages": MSG, "n": 2}, "n", "only n=1"),
        ({"model": TINY, "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"model": TINY, "messages": MSG, "stream": "yes please"}, "stream", "boolean"),
        (
            {"model": TINY, "messages": MSG, "response_format": {"type": "xml"}},
            "response_format",
            "json_object",
        ),
        ({"model": TINY, "messages": MSG, "tools": [{"type": "function"}]}, None, "tools"),
        ({"model": "", "messages": MSG}, "model", "at least 1"),
    ],
)
async def test_chat_validation_errors(http, body, param, words):
    response = await http.post("v1/chat/completions", json=body)
    error = assert_openai_error(response, 400, code="invalid_request", param=param)
    assert error["type"] == "invalid_request_error"
    assert words in error["message"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"model": "x", "messages": [', "not valid JSON"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"[1, 2, 3]", "JSON object"),
        (b'"just a string"', "JSON object"),
    ],
)
async def test_bodies_that_are_not_json_objects(http, content, words):
    response = await http.post(
        "v1/chat/completions", content=content, headers={"Content-Type": "application/json"}
    )
    error = assert_openai_error(response, 400)
    assert words in error["message"]


async def test_unknown_model_is_404_stream_or_not(http):
    for stream in (False, True):
        body = {"model": "no-such-model:1", "messages": MSG, "max_tokens": 4, "stream": stream}
        response = await http.post("v1/chat/completions", json=body)
        error = assert_openai_error(response, 404, code="model_not_found", param=None)
        assert "no-such-model" in error["message"]


async def test_unknown_model_on_other_routes(http):
    for path in ("v1/models/no-such-model:1", "openai/load/no-such-model", "openai/unload/no-such-model"):
        assert_openai_error(await http.get(path), 404, code="model_not_found")
    count = await http.post(
        "v1/chat/completions/tokenizer/encode/count", json={"model": "nope", "messages": MSG}
    )
    assert_openai_error(count, 404, code="model_not_found")
    download = await http.post("openai/download", json={"model": "nope"})
    assert_openai_error(download, 404, code="model_not_found")
    job = await http.post("downloads", json={"model": "nope"})
    assert_openai_error(job, 404, code="model_not_found")


async def test_unknown_route_under_the_prefix(http):
    for method, path in (("GET", "v1/nothing"), ("POST", "v2/chat"), ("DELETE", "openai"), ("GET", "")):
        response = await http.request(method, path)
        error = assert_openai_error(response, 404, code="not_found")
        assert "openapi.json" in error["message"]


async def test_wrong_method(http):
    response = await http.get("v1/chat/completions")
    error = assert_openai_error(response, 405, code="method_not_allowed")
    assert "POST" in error["message"] and response.headers["allow"] == "POST"
    response = await http.post("openai/status", json={})
    assert_openai_error(response, 405, code="method_not_allowed")
    response = await http.delete("v1/models")
    assert_openai_error(response, 405)


async def test_bad_query_parameters(http):
    error = assert_openai_error(await http.get("openai/load/tiny?ttl=soon"), 400, param="ttl")
    assert "integer" in error["message"]
    assert_openai_error(await http.get("openai/load/tiny?ttl=-5"), 400, param="ttl")
    assert_openai_error(await http.get("openai/unload/tiny?force=maybe"), 400, param="force")


async def test_other_bodies(http):
    assert_openai_error(await http.post("v1/completions", json={"model": TINY}), 400, param="prompt")
    assert_openai_error(
        await http.post("v1/completions", json={"model": TINY, "prompt": ["a", "b"]}), 400, param="prompt"
    )
    assert_openai_error(await http.post("openai/download", json={}), 400, param="model")
    assert_openai_error(await http.post("downloads", content=b"{"), 400)
    assert_openai_error(await http.delete("downloads/dl-doesnotexist"), 404, code="download_not_found")


async def test_request_id_header(http):
    response = await http.get("openai/status")
    assert len(response.headers["x-request-id"]) == 12
    assert json.loads(response.text)["pid"] > 0
