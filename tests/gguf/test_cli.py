"""`jupyter foundry model import`: into the cache under an alias, then found by that alias."""

from __future__ import annotations

import json

import pytest

from foundry_jupyter.cli import main
from foundry_jupyter.config import defaults
from foundry_jupyter.models.manager import ModelManager, default_gguf_alias


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache" / "models"
    monkeypatch.setenv("FOUNDRY_JUPYTER_CACHE", str(root))
    return root


def test_import_then_resolve_by_alias(tiny_gguf, cache, capsys):
    assert main(["model", "import", str(tiny_gguf("Q4_1")), "--alias", "my-tiny", "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["id"] == "my-tiny-int4-generic-cpu:1" and out["alias"] == "my-tiny"
    manager = ModelManager(defaults())
    assert manager.local_path("my-tiny") == manager.cache.find("my-tiny-int4-generic-cpu:1").path
    assert (manager.local_path("my-tiny") / "inference_model.json").is_file()
    assert not [p for p in manager.cache.root.rglob("*.partial")]

    # A second import of the same alias and precision replaces the first.
    assert main(["model", "import", str(tiny_gguf("Q4_1")), "--alias", "my-tiny"]) == 0
    assert "Imported" in capsys.readouterr().out
    assert [m.id for m in ModelManager(defaults()).list_cached()] == ["my-tiny-int4-generic-cpu:1"]


def test_import_errors_are_one_line(tiny_gguf, cache, capsys, tmp_path):
    assert main(["model", "import", str(tmp_path / "missing.gguf")]) == 1
    assert capsys.readouterr().err.strip() == f"Error: GGUF file not found: {tmp_path / 'missing.gguf'}"
    assert main(["model", "import", str(tiny_gguf("Q4_1")), "--alias", "smollm2-135m"]) == 1
    assert "belongs to the catalog model" in capsys.readouterr().err
    assert main(["model", "import", str(tiny_gguf("Q4_1")), "--alias", "bad alias"]) == 1
    assert "Bad alias" in capsys.readouterr().err


def test_default_alias_from_the_file_name():
    assert default_gguf_alias("/x/SmolLM2-135M-Instruct.Q4_1.gguf") == "smollm2-135m-instruct-q4_1"


def test_the_cli_offers_the_converters_precisions():
    from foundry_jupyter.cli.convert import COMPILE_PRECISIONS, IMPORT_PRECISIONS
    from foundry_jupyter.models import compile as compile_module
    from foundry_jupyter.models.gguf import DEFAULT_PRECISION, PRECISIONS

    assert set(IMPORT_PRECISIONS) == set(PRECISIONS) and DEFAULT_PRECISION == "int4"
    assert set(COMPILE_PRECISIONS) == set(compile_module.PRECISIONS)
