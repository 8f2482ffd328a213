"""A model cache on a read-only file system (a shared, mounted cache): removing a model answers a
clear 4xx that names the read-only place, and asking for a model that is already there succeeds even
though its last-used stamp cannot be written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import TINY
from .test_errors import assert_openai_error


def _make_read_only(folder: Path) -> None:
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return
    # root writes through permission bits: a read-only bind mount is what a shared cache looks like
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {done.stderr.decode().strip()}")


def _undo(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["umount", str(folder)], check=False, capture_output=True)
    else:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


@pytest.fixture
def read_only_cache(foundry_cache: Path):
    _make_read_only(foundry_cache)
    assert not os.access(foundry_cache, os.W_OK) or os.geteuid() == 0
    try:
        yield foundry_cache
    finally:
        _undo(foundry_cache)


async def test_removing_from_a_read_only_cache_is_a_clear_4xx(http, read_only_cache):
    response = await http.delete(f"cache/{TINY}")
    error = assert_openai_error(response, 403, code="cache_read_only")
    assert str(read_only_cache) in error["message"] and "read-only" in error["message"]
    assert TINY in (await http.get("openai/models")).json()


async def test_a_cached_model_is_served_from_a_read_only_cache(http, client, read_only_cache):
    async with http.stream("POST", "openai/download", json={"model": "tiny"}) as response:
        lines = [line async for line in response.aiter_lines()]
    assert response.status_code == 200
    result = json.loads(lines[-1])
    assert result["success"] is True, lines
    answer = await client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert answer.choices[0].message.content is not None
