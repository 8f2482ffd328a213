"""`foundry_jupyter.cache_table()` & co: the same session as the magics, DataFrames, clear errors."""

from __future__ import annotations

from typing import Any

import pytest

import foundry_jupyter
from foundry_jupyter.engine.testmodel import TINY_ID
from foundry_jupyter.kernel.backends import ServiceUnavailable
from foundry_jupyter.kernel.results import ChatResult


def test_tables_from_the_package(shell: Any) -> None:
    import pandas as pd

    cache = foundry_jupyter.cache_table()
    assert isinstance(cache, pd.DataFrame) and cache["id"].tolist() == [TINY_ID]
    assert cache["size_bytes"].iloc[0] > 0
    catalog = foundry_jupyter.catalog_table("tiny")
    assert catalog["id"].tolist() == [TINY_ID]
    assert catalog["cached"].tolist() == [True]
    assert foundry_jupyter.loaded_table().empty


def test_chat_continues_the_cells_conversation(shell: Any, magics: Any) -> None:
    shell.run_cell_magic("foundry", "tiny -n 3", "from a cell")
    result = foundry_jupyter.chat("from code", max_tokens=3)
    assert isinstance(result, ChatResult)
    assert result.model == TINY_ID and result.backend == "kernel"
    assert result.usage is not None and 1 <= result.usage.completion_tokens <= 3
    assert [m["content"] for m in magics.session.conversation.messages if m["role"] == "user"] == [
        "from a cell",
        "from code",
    ]
    assert foundry_jupyter.loaded_table()["id"].tolist() == [TINY_ID]
    fresh = foundry_jupyter.chat("again", new=True, max_tokens=2)
    assert len(magics.session.conversation.messages) == 2 and fresh.text == str(fresh)


def test_same_seed_same_answer(shell: Any) -> None:
    first = foundry_jupyter.chat("seeded", model="tiny", temperature=1.0, seed=7, max_tokens=6, new=True)
    second = foundry_jupyter.chat("seeded", model="tiny", temperature=1.0, seed=7, max_tokens=6, new=True)
    assert first.text == second.text


def test_openai_client_needs_the_service(shell: Any) -> None:
    with pytest.raises(ServiceUnavailable, match="FOUNDRY_JUPYTER_URL"):
        foundry_jupyter.openai_client()


def test_openai_client_points_at_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_JUPYTER_URL", "http://127.0.0.1:9/base/foundry/")
    monkeypatch.setenv("FOUNDRY_JUPYTER_TOKEN", "secret")
    client = foundry_jupyter.openai_client()
    assert str(client.base_url) == "http://127.0.0.1:9/base/foundry/v1/"
    assert client.api_key == "secret"
    client.close()


def test_auto_backend_falls_back_to_the_kernel_when_the_service_is_silent(
    cache_copy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from foundry_jupyter.kernel.backends import choose_backend

    monkeypatch.setenv("FOUNDRY_JUPYTER_URL", "http://127.0.0.1:9/foundry/")  # nothing listens on port 9
    monkeypatch.setenv("FOUNDRY_JUPYTER_TOKEN", "secret")
    backend = choose_backend("auto")
    try:
        assert backend.name == "kernel"
    finally:
        backend.close()
    with pytest.raises(ServiceUnavailable, match="does not answer"):
        choose_backend("server")
