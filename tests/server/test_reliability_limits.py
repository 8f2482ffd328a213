"""Body limits: a body over `FoundryApp.max_body_size` is refused with a 413 before it is read, and a
prompt far longer than the model's context is refused before anything tokenizes it."""

from __future__ import annotations

import asyncio
import json

import pytest

from .conftest import TINY
from .test_errors import assert_openai_error

LIMIT = 40_000_000


@pytest.fixture
def foundry_config() -> dict:
    return {"max_body_size": LIMIT}


async def _raw_headers_only(port: int, path: str, token: str, length: int) -> bytes:
    """Send the headers of a POST announcing `length` bytes, send no body, and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), timeout=10)
    finally:
        writer.close()


async def test_a_body_over_the_limit_is_refused_before_it_is_read(server, jp_http_port, jp_base_url, token):
    answer = await _raw_headers_only(
        jp_http_port, f"{jp_base_url}foundry/v1/chat/completions", token, 50_000_000
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:500]
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large" and "max_body_size" in error["message"]


async def test_an_http_client_gets_the_413(http):
    body = {"model": TINY, "messages": [{"role": "user", "content": "x" * (LIMIT + 10)}]}
    response = await http.post("v1/chat/completions", content=json.dumps(body).encode())
    assert_openai_error(response, 413, code="request_too_large")
    # A chunked body (no Content-Length) over the limit is refused too, without keeping it.

    async def chunks():
        for _ in range(420):
            yield b"x" * 100_000

    response = await http.post("v1/chat/completions", content=chunks())
    assert_openai_error(response, 413, code="request_too_large")
    # Bodies under the limit are served as before.
    small = {"model": TINY, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    assert (await http.post("v1/chat/completions", json=small)).status_code == 200


async def test_a_prompt_far_over_the_context_is_refused_without_tokenizing(http):
    assert (await http.get(f"openai/load/{TINY}")).status_code == 200
    body = {"model": TINY, "messages": [{"role": "user", "content": "word " * 6_000_000}]}  # 30 MB
    response = await http.post("v1/chat/completions", json=body)
    error = assert_openai_error(response, 400, code="context_length_exceeded")
    # Counted in characters, not tokens: the length check refused it before the tokenizer ran.
    assert "30000000 characters" in error["message"], error["message"]
    # The same check guards legacy completions.
    body = {"model": TINY, "prompt": "word " * 6_000_000}
    assert_openai_error(await http.post("v1/completions", json=body), 400, code="context_length_exceeded")
