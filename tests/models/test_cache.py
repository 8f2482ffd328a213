"""The cache in Foundry Local's layout: scan rule, remove, move."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from foundry_jupyter.errors import InvalidRequest, ModelNotFound
from foundry_jupyter.models.cache import ModelCache

from .helpers import make_model_folder


@pytest.fixture
def cache(tmp_path):
    root = tmp_path / "models"
    make_model_folder(root / "Microsoft" / "a-generic-cpu-1", name="a-generic-cpu:1")
    make_model_folder(root / "Microsoft" / "b-cuda-gpu-2" / "v2", name="b-cuda-gpu:2", provider="cuda")
    make_model_folder(root / "Other" / "noversion", name="noversion")
    return ModelCache(root)


def test_scan_finds_complete_models_in_foundry_layout(cache):
    found = {m.id: m for m in cache.scan()}
    assert set(found) == {"a-generic-cpu:1", "b-cuda-gpu:2", "noversion:0"}
    gpu = found["b-cuda-gpu:2"]
    assert gpu.device == "GPU" and gpu.execution_provider == "CUDAExecutionProvider"
    assert gpu.path.name == "v2" and gpu.size_bytes > 1000
    assert found["a-generic-cpu:1"].alias == "a-generic-cpu"


def test_scan_ignores_incomplete_downloads(cache):
    root = cache.root
    # still downloading: marker file present
    partial = make_model_folder(root / "Microsoft" / "c-generic-cpu-1", name="c-generic-cpu:1")
    (partial / "download.tmp").touch()
    # inference_model.json not written yet (it is written last)
    make_model_folder(root / "Microsoft" / "d-generic-cpu-1", name="d-generic-cpu:1", marker=False)
    # our own staging folder, even when it looks whole
    make_model_folder(root / "Microsoft" / "e-generic-cpu-1.partial", name="e-generic-cpu:1")
    # a marker without a Name
    broken = make_model_folder(root / "Microsoft" / "f-generic-cpu-1", name="f-generic-cpu:1")
    (broken / "inference_model.json").write_text(json.dumps({"PromptTemplate": None}))
    ids = {m.id for m in cache.scan()}
    assert ids == {"a-generic-cpu:1", "b-cuda-gpu:2", "noversion:0"}


def test_scan_does_not_descend_into_a_model(cache):
    outer = cache.root / "Microsoft" / "a-generic-cpu-1"
    make_model_folder(outer / "nested", name="nested:1")
    assert "nested:1" not in {m.id for m in cache.scan()}


def test_find_is_case_insensitive_and_missing_root_is_empty(cache, tmp_path):
    assert cache.find("A-GENERIC-CPU:1").id == "a-generic-cpu:1"
    assert cache.find("zzz:1") is None
    assert ModelCache(tmp_path / "absent").scan() == []


def test_touch_records_last_used(cache):
    assert cache.find("a-generic-cpu:1").last_used is None
    cache.touch("a-generic-cpu:1")
    assert cache.find("a-generic-cpu:1").last_used is not None


def test_remove_deletes_the_folder_and_empty_publisher(cache):
    removed = cache.remove("noversion:0")
    assert not removed.path.exists()
    assert not (cache.root / "Other").exists()
    assert cache.find("noversion") is None
    with pytest.raises(ModelNotFound):
        cache.remove("noversion:0")


def test_two_removals_at_once_answer_removed_and_not_found(cache, monkeypatch):
    """Two requests remove one model together: both find it, one deletes it, the other hears that
    it is gone (not an internal error)."""
    from foundry_jupyter.models import cache as cache_module

    real_rmtree = cache_module.shutil.rmtree
    target = cache.find("noversion:0").path

    def raced(path, *args, **kwargs):
        if Path(path) == target and target.exists():
            real_rmtree(path)  # the other request got there first
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(cache_module.shutil, "rmtree", raced)
    with pytest.raises(ModelNotFound):
        cache.remove("noversion:0")
    assert not target.exists()


def test_remove_never_touches_anything_outside_the_cache(cache, tmp_path):
    outside = make_model_folder(tmp_path / "precious", name="precious:1")
    os.symlink(outside, cache.root / "Microsoft" / "precious-1")
    assert "precious:1" not in {m.id for m in cache.scan()}  # links are not followed
    with pytest.raises(ModelNotFound):
        cache.remove("precious:1")
    assert (outside / "model.onnx").exists()


def test_install_writes_the_marker_last_and_renames_into_place(tmp_path):
    cache = ModelCache(tmp_path / "models")
    staging = cache.staging_dir("m-generic-cpu:3", "Pub")
    make_model_folder(staging, marker=False)
    (staging / "download.tmp").touch()
    model = cache.install(
        staging, "m-generic-cpu:3", "Pub", alias="m", device="CPU", execution_provider="CPUExecutionProvider"
    )
    assert model.path == tmp_path / "models" / "Pub" / "m-generic-cpu-3"
    assert not staging.exists() and not (model.path / "download.tmp").exists()
    marker = json.loads((model.path / "inference_model.json").read_text())
    assert marker["Name"] == "m-generic-cpu:3" and marker["Alias"] == "m"
    assert cache.find("m-generic-cpu:3").alias == "m"


def test_move_carries_every_model(cache, tmp_path):
    before = {m.id for m in cache.scan()}
    new = cache.move(tmp_path / "elsewhere" / "models")
    assert new == (tmp_path / "elsewhere" / "models").resolve()
    assert {m.id for m in cache.scan()} == before
    assert all(m.path.is_relative_to(new) for m in cache.scan())
    assert not any((tmp_path / "models").iterdir())


def test_move_refuses_nested_or_non_empty_targets(cache, tmp_path):
    with pytest.raises(InvalidRequest, match="inside"):
        cache.move(cache.root / "sub")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    with pytest.raises(InvalidRequest, match="not an empty folder"):
        cache.move(busy)
    assert len(cache.scan()) == 3


WINDOWS_RESERVED_CHARS = set('<>:"/\\|?*')
WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"{d}{i}" for d in ("COM", "LPT") for i in range(10))}


def windows_accepts(name: str) -> bool:
    """Windows' file name rules: no reserved or control characters, no trailing dot or space, no
    device name (with any extension), at most 255 characters."""
    return (
        0 < len(name) <= 255
        and not any(c in WINDOWS_RESERVED_CHARS or ord(c) < 32 for c in name)
        and not name.endswith((".", " "))
        and name.split(".")[0].rstrip(" ").upper() not in WINDOWS_DEVICES
    )


@pytest.mark.parametrize(
    ("model_id", "publisher"),
    [
        ("Phi-3.5-mini-instruct-generic-cpu:1", "Microsoft"),
        ("con:1", "NUL"),
        ("CON", "aux.local"),
        ("lpt1.tar:2", "com9"),
        ("a:b:c", "pub:lisher"),
        ("trailing. :3", "dots..."),
        ('what<>"/\\|?*\t:4', " spaced "),
        ("x" * 300 + ":1", "p" * 300),
    ],
)
def test_every_model_id_maps_to_folder_names_windows_accepts(tmp_path, model_id, publisher):
    cache = ModelCache(tmp_path / "models")
    folder = cache.model_dir(model_id, publisher)
    segments = folder.relative_to(cache.root).parts
    assert len(segments) == 2 and all(windows_accepts(s) for s in segments), segments
    assert windows_accepts(cache.staging_dir(model_id, publisher).name)


def test_a_model_whose_id_holds_colons_and_a_device_name_is_found_by_its_id(tmp_path):
    cache = ModelCache(tmp_path / "models")
    staging = cache.staging_dir("aux.v2:7", "Pub")
    make_model_folder(staging, marker=False)
    model = cache.install(staging, "aux.v2:7", "Pub", alias="c", device="CPU", execution_provider="cpu")
    assert model.path.name == "_aux.v2-7" and windows_accepts(model.path.name)
    assert cache.find("aux.v2:7").path == model.path and cache.find("aux.v2:7").id == "aux.v2:7"
