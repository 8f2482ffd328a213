"""Which models reason: the catalog's `supportsReasoning`, or the chat template of the cached folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from foundry_jupyter.config import defaults
from foundry_jupyter.engine.testmodel import TINY_ID
from foundry_jupyter.models import view
from foundry_jupyter.models.manager import ModelManager
from tests.support.reasoning import OPENS_THINKING


def test_a_cached_model_whose_template_thinks_is_marked_reasoning(tiny_cache_dir: Path, tmp_path: Path):
    cache = shutil.copytree(tiny_cache_dir, tmp_path / "models")
    manager = ModelManager(defaults({"FOUNDRY_JUPYTER_CACHE": str(cache)}))
    rows = {r["id"]: r for r in view.catalog_rows(manager)}
    assert rows[TINY_ID]["supportsReasoning"] is False
    assert "reasoning" not in view.model_metadata(manager)[TINY_ID]["capabilities"]
    assert (
        "reasoning" in rows["deepseek-r1-distill-qwen-1.5b-generic-cpu:1"]["capabilities"]
    )  # the catalog says

    config_file = manager.require_local(TINY_ID).path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "chat_template": OPENS_THINKING}))
    rows = {r["id"]: r for r in view.catalog_rows(manager)}
    assert rows[TINY_ID]["supportsReasoning"] is True
    assert view.model_metadata(manager)[TINY_ID]["capabilities"] == [
        "chat",
        "completions",
        "tools",
        "reasoning",
        "fim",  # the tiny model's tokenizer has fill-in-the-middle tokens
    ]


def test_listings_read_a_cached_folders_tokenizer_files_once(
    tiny_cache_dir: Path, tmp_path: Path, monkeypatch
):
    cache = shutil.copytree(tiny_cache_dir, tmp_path / "models")
    manager = ModelManager(defaults({"FOUNDRY_JUPYTER_CACHE": str(cache)}))
    reads: list[tuple[str, Path]] = []

    def counted(name, read):
        def wrapper(path: Path):
            reads.append((name, path))
            return read(path)

        return wrapper

    monkeypatch.setattr(view, "chat_template", counted("template", view.chat_template))
    monkeypatch.setattr(view, "read_fim_tokens", counted("fim", view.read_fim_tokens))
    view.catalog_rows(manager)
    view.model_metadata(manager)
    view.catalog(manager)
    folders = [Path(m.path) for m in manager.list_cached()]
    assert sorted(reads) == sorted([*(("template", p) for p in folders), *(("fim", p) for p in folders)])
