"""`foundry_jupyter.embed()`, `embed_table()` and `%foundry embed` on the kernel-resident engine, with
the built-in random BERT (`random-embed`, built into the cache on first use)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import foundry_jupyter
from foundry_jupyter.kernel.magics import FoundryCellError
from foundry_jupyter.models.catalog import TINY_EMBED_ALIAS, TINY_EMBED_ID

TEXTS = ["hello world", "the cat and the dog"]


def test_embed_loads_the_model_and_returns_an_array(shell: Any, magics: Any) -> None:
    vectors = foundry_jupyter.embed(TEXTS, model=TINY_EMBED_ALIAS)
    assert isinstance(vectors, np.ndarray) and vectors.shape == (2, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    one = foundry_jupyter.embed("hello world", TINY_EMBED_ALIAS, dimensions=4)
    assert one.shape == (1, 4)
    np.testing.assert_allclose(foundry_jupyter.embed(TEXTS[:1], TINY_EMBED_ALIAS), vectors[:1], atol=1e-5)
    assert foundry_jupyter.loaded_table()["id"].tolist() == [TINY_EMBED_ID]


def test_embed_magic_answers_a_dataframe_and_tables_show_the_task(shell: Any) -> None:
    frame = shell.run_line_magic(
        "foundry", f'embed -m {TINY_EMBED_ALIAS} "hello world" "the cat and the dog"'
    )
    assert frame["text"].tolist() == TEXTS
    np.testing.assert_allclose(
        np.stack(frame["embedding"]), foundry_jupyter.embed(TEXTS, TINY_EMBED_ALIAS), atol=1e-6
    )
    catalog = shell.run_line_magic("foundry", f"list {TINY_EMBED_ALIAS}").set_index("id")
    assert catalog.loc[TINY_EMBED_ID, "task"] == "embeddings"


def test_chat_models_do_not_embed_and_embedding_models_do_not_chat(shell: Any) -> None:
    with pytest.raises(FoundryCellError, match="not an embedding model"):
        shell.run_line_magic("foundry", 'embed -m tiny "hello"')
    with pytest.raises(FoundryCellError, match="embedding model"):
        shell.run_cell_magic("foundry", TINY_EMBED_ALIAS, "hello")
