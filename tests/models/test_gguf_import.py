"""`ModelManager.import_gguf`: a GGUF file into the cache under an alias, with register's alias rules."""

from __future__ import annotations

import pytest

from foundry_jupyter.errors import InvalidRequest
from foundry_jupyter.models.manager import ModelManager, default_gguf_alias
from tests.gguf.tinygguf import write_tiny_gguf

from .helpers import DEMO, entry, settings_with


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "Little-Llama.Q4_1.gguf", "Q4_1")


def manager(tmp_path) -> ModelManager:
    entries = [*DEMO, entry("taken-generic-cpu", "other")]
    return ModelManager(settings_with(tmp_path, entries), providers=["cpu"])


def test_import_under_the_default_alias_reports_stages_and_resolves(tmp_path, gguf_file):
    m = manager(tmp_path)
    stages: list[str] = []
    model = m.import_gguf(gguf_file, precision="fp32", progress=stages.append)
    assert default_gguf_alias(gguf_file) == "little-llama-q4_1" == model.alias
    assert model.id == "little-llama-q4_1-fp32-generic-cpu:1"
    assert model.path == m.cache.model_dir(model.id, "local")
    assert stages[0] == "reading Little-Llama.Q4_1.gguf" and stages[-1] == "done"
    assert m.resolve("little-llama-q4_1").id == model.id  # the catalog was refreshed
    assert not list(m.cache.root.rglob("*.partial"))


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ("demo", "belongs to the catalog model"),  # a catalog alias
        ("taken-generic-cpu", "belongs to the catalog model"),  # a catalog model's name:1
        ("bad alias", "Bad alias"),
    ],
)
def test_import_and_register_refuse_the_same_aliases(tmp_path, gguf_file, tiny_model_dir, alias, message):
    m = manager(tmp_path)
    for attempt in (
        lambda: m.import_gguf(gguf_file, alias=alias),
        lambda: m.register(tiny_model_dir, alias),
    ):
        with pytest.raises(InvalidRequest, match=message) as info:
            attempt()
        assert info.value.param == "alias"
    assert m.list_cached() == []


def test_a_failed_conversion_leaves_nothing_in_the_cache(tmp_path):
    m = manager(tmp_path)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    with pytest.raises(InvalidRequest):
        m.import_gguf(broken, alias="broken")
    assert m.list_cached() == []
    assert not list(m.cache.root.rglob("*.partial"))
