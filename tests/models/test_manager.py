"""ModelManager: alias resolution, the built-in tiny model, registration, remove and move."""

from __future__ import annotations

import json
import shutil

import pytest

from foundry_jupyter.errors import InvalidRequest, ModelNotCached, ModelNotFound, ProviderUnavailable
from foundry_jupyter.models.manager import ModelManager

from .helpers import DEMO, make_model_folder, settings_with


def manager(tmp_path, providers=("cpu",), entries=DEMO) -> ModelManager:
    return ModelManager(settings_with(tmp_path, entries), providers=list(providers))


def cache_variant(m: ModelManager, model_id: str, provider: str | None = None) -> None:
    name, _, version = model_id.partition(":")
    make_model_folder(m.cache.root / "Test" / f"{name}-{version}", name=model_id, provider=provider)


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        (["cpu"], "demo-generic-cpu:2"),  # highest version among usable
        (["cuda", "cpu"], "demo-cuda-gpu:1"),  # GPU before CPU
        (["dml", "cpu"], "demo-dml-gpu:1"),
        (["cuda", "dml", "cpu"], "demo-cuda-gpu:1"),  # CUDA before other GPU providers
        (["qnn", "cuda", "cpu"], "demo-qnn-npu:1"),  # NPU first
    ],
)
def test_alias_picks_the_best_usable_variant(tmp_path, providers, expected):
    assert manager(tmp_path, providers).resolve("demo").id == expected


def test_a_cached_variant_wins_over_a_better_device(tmp_path):
    m = manager(tmp_path, ["cuda", "cpu"])
    cache_variant(m, "demo-generic-cpu:1")
    assert m.resolve("demo").id == "demo-generic-cpu:1"
    assert m.local_path("demo") == m.cache.root / "Test" / "demo-generic-cpu-1"


def test_full_ids_and_names(tmp_path):
    m = manager(tmp_path, ["cuda", "cpu"])
    assert m.resolve("demo-generic-cpu:1").id == "demo-generic-cpu:1"
    assert m.resolve("DEMO-GENERIC-CPU:1").id == "demo-generic-cpu:1"
    assert m.resolve("demo-generic-cpu").id == "demo-generic-cpu:2"  # a name: highest version
    assert m.resolve("demo-qnn-npu:1").id == "demo-qnn-npu:1"  # a full id is taken as asked


def test_preferred_provider_setting_wins_among_usable(tmp_path):
    settings = settings_with(tmp_path, DEMO)
    from dataclasses import replace

    m = ModelManager(replace(settings, execution_provider="CPUExecutionProvider"), providers=["cuda", "cpu"])
    assert m.resolve("demo").id == "demo-generic-cpu:2"


def test_unknown_names_suggest_close_ones(tmp_path):
    with pytest.raises(ModelNotFound) as info:
        manager(tmp_path).resolve("demp")
    assert "demo" in info.value.message and "model list" in info.value.message


def test_alias_without_a_usable_variant(tmp_path):
    with pytest.raises(ProviderUnavailable) as info:
        manager(tmp_path, ["cpu"]).resolve("gpuonly")
    assert "CUDAExecutionProvider" in info.value.message


def test_uncatalogued_cached_models_resolve_by_alias_and_id(tmp_path):
    m = manager(tmp_path)
    folder = make_model_folder(m.cache.root / "local" / "imported-1", name="imported-generic-cpu:1")
    marker = json.loads((folder / "inference_model.json").read_text())
    (folder / "inference_model.json").write_text(json.dumps({**marker, "Alias": "imported"}))
    assert m.resolve("imported").id == "imported-generic-cpu:1"
    assert m.resolve("imported-generic-cpu:1").id == "imported-generic-cpu:1"
    assert m.local_path("imported") == folder


def test_not_downloaded_models(tmp_path):
    m = manager(tmp_path)
    assert m.local_path("demo") is None
    with pytest.raises(ModelNotCached, match="model download demo"):
        m.require_local("demo")


def test_ensure_builds_tiny_in_foundry_layout(tmp_path):
    m = manager(tmp_path, entries=None)
    model = m.ensure("tiny")
    assert model.path == m.cache.root / "foundry-jupyter" / "tiny-generic-cpu-1"
    assert json.loads((model.path / "inference_model.json").read_text())["Name"] == "tiny-generic-cpu:1"
    assert (model.path / "model.onnx").is_file() and not (model.path / "download.tmp").exists()
    stamp = (model.path / "model.onnx").stat().st_mtime_ns
    again = m.ensure("tiny")  # cached: not rebuilt
    assert again.path == model.path and (model.path / "model.onnx").stat().st_mtime_ns == stamp
    assert again.last_used is not None or m.cache.find("tiny-generic-cpu:1").last_used is not None
    listed = m.list_cached()
    assert [(c.alias, c.id) for c in listed] == [("tiny", "tiny-generic-cpu:1")]
    assert listed[0].to_dict()["sizeBytes"] > 0


def test_session_tiny_cache_fixture(tiny_cache_dir):
    marker = tiny_cache_dir / "foundry-jupyter" / "tiny-generic-cpu-1" / "inference_model.json"
    assert json.loads(marker.read_text())["Name"] == "tiny-generic-cpu:1"


def test_register_a_local_folder(tmp_path, tiny_model_dir):
    m = manager(tmp_path)
    folder = shutil.copytree(tiny_model_dir, tmp_path / "my-model")
    entry = m.register(folder, "mine")
    assert entry.id == "mine:1" and entry.source.kind == "local"
    assert m.resolve("mine").id == "mine:1"
    assert m.local_path("mine") == folder
    assert m.ensure("mine").path == folder
    listed = {c.alias: c for c in m.list_cached()}
    assert listed["mine"].registered and listed["mine"].path == folder
    # a second manager (another process) sees the registration
    assert manager_from(m).resolve("mine:1").alias == "mine"
    removed = m.remove("mine")
    assert removed.registered and folder.is_dir()  # the folder itself is never deleted
    with pytest.raises(ModelNotFound):
        m.resolve("mine")


def manager_from(m: ModelManager) -> ModelManager:
    return ModelManager(m.settings, providers=["cpu"])


@pytest.mark.parametrize("alias", ["demo", "bad alias", ""])
def test_register_refuses_taken_or_bad_aliases(tmp_path, tiny_model_dir, alias):
    with pytest.raises(InvalidRequest):
        manager(tmp_path).register(tiny_model_dir, alias)


def test_register_refuses_folders_that_are_not_models(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidRequest, match=r"genai_config\.json"):
        manager(tmp_path).register(tmp_path / "empty", "x")
    with pytest.raises(InvalidRequest, match="Not a folder"):
        manager(tmp_path).register(tmp_path / "absent", "x")


def test_folder_paths_resolve_directly(tmp_path, tiny_model_dir):
    entry = manager(tmp_path).resolve(str(tiny_model_dir))
    assert entry.source.kind == "local" and entry.source.path == str(tiny_model_dir.resolve())


def test_remove_by_alias_and_move(tmp_path):
    m = manager(tmp_path)
    cache_variant(m, "demo-generic-cpu:1")
    new = m.move_cache(tmp_path / "moved")
    assert m.local_path("demo") == new / "Test" / "demo-generic-cpu-1"
    removed = m.remove("demo")
    assert removed.id == "demo-generic-cpu:1" and not removed.path.exists()
    with pytest.raises(ModelNotFound):
        m.remove("demo")


def test_a_cached_variant_this_machine_cannot_run_is_passed_over(tmp_path):
    m = manager(tmp_path, ["cpu"])
    cache_variant(m, "demo-cuda-gpu:1", provider="cuda")
    assert m.resolve("demo").id == "demo-generic-cpu:2"
    assert m.resolve("demo-cuda-gpu:1").id == "demo-cuda-gpu:1"  # still reachable by its id
