"""models.view: the rows the service, the kernel and the CLI show, and which loaded model a name means."""

from __future__ import annotations

import pytest

from foundry_jupyter.errors import ModelNotFound
from foundry_jupyter.models import view
from foundry_jupyter.models.manager import ModelManager

from .helpers import DEMO, make_model_folder, settings_with


def manager(tmp_path, providers=("cpu",)) -> ModelManager:
    return ModelManager(settings_with(tmp_path, DEMO), providers=list(providers))


def cache_variant(m: ModelManager, model_id: str, provider: str | None = None) -> None:
    name, _, version = model_id.partition(":")
    make_model_folder(m.cache.root / "Test" / f"{name}-{version}", name=model_id, provider=provider)


def test_catalog_rows_flag_what_is_cached_in_priority_order(tmp_path):
    m = manager(tmp_path, ["cuda", "cpu"])
    cache_variant(m, "demo-generic-cpu:1")
    rows = view.catalog_rows(m)
    by_id = {r["name"]: r for r in rows}
    assert by_id["demo-generic-cpu:1"]["cached"] is True
    assert [r["cached"] for r in rows].count(True) == 1
    demo = [r["name"] for r in rows if r["alias"] == "demo"]
    assert demo[0] == "demo-cuda-gpu:1"  # the best variant of the alias first
    assert [e.id for e, _ in view.catalog(m)] == [r["name"] for r in rows]


def test_catalog_filter_is_model_lists(tmp_path):
    m = manager(tmp_path)
    rows = view.catalog_rows(m, "device=GPU")
    assert rows and {r["runtime"]["deviceType"] for r in rows} == {"GPU"}
    assert all(r["alias"] == "gpuonly" for r in view.catalog_rows(m, "alias=gpu*"))


def test_resolved_row_is_the_managers_choice_with_cached(tmp_path):
    m = manager(tmp_path, ["cpu"])
    row = view.resolved_row(m, "demo")
    assert (row["name"], row["cached"]) == ("demo-generic-cpu:2", False)
    cache_variant(m, "demo-generic-cpu:1")
    row = view.resolved_row(m, "demo")  # a cached variant wins
    assert (row["name"], row["cached"]) == ("demo-generic-cpu:1", True)
    with pytest.raises(ModelNotFound):
        view.resolved_row(m, "no-such-model")


def test_cache_listing_names_the_folder_in_use(tmp_path):
    m = manager(tmp_path)
    assert view.cache_listing(m) == {"location": str(m.cache.root), "models": []}
    cache_variant(m, "demo-generic-cpu:2")
    [model] = view.cache_listing(m)["models"]
    assert (model["id"], model["alias"]) == ("demo-generic-cpu:2", "demo")


def test_loaded_row_shape():
    row = view.loaded_row(
        "m:1", "m", "CPUExecutionProvider", pids=[7, 8], ttl_seconds=60, ttl_remaining=12.345
    )
    assert row == {
        "id": "m:1",
        "alias": "m",
        "executionProvider": "CPUExecutionProvider",
        "memoryBytes": None,
        "ttlSeconds": 60,
        "ttlRemaining": 12.3,
        "pid": 7,
        "pids": [7, 8],
        "startingProcesses": 0,
        "activeRequests": None,
    }


LOADED = {"demo-generic-cpu:2": "demo", "team:llama:3": "llama"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("demo-generic-cpu:2", "demo-generic-cpu:2"),
        ("DEMO-Generic-CPU:2", "demo-generic-cpu:2"),
        ("demo-generic-cpu", "demo-generic-cpu:2"),  # without its version
        ("demo", "demo-generic-cpu:2"),  # by alias
        ("Demo", "demo-generic-cpu:2"),
        ("team:llama", "team:llama:3"),  # the version follows the last ':'
        ("team", None),
        ("other", None),
    ],
)
def test_loaded_id(name, expected):
    assert view.loaded_id(name, LOADED) == expected


def test_loaded_id_asks_resolve_among_an_alias_variants():
    loaded = {"demo-generic-cpu:1": "demo", "demo-cuda-gpu:1": "demo"}
    assert view.loaded_id("demo", loaded) == "demo-generic-cpu:1"  # the first loaded
    assert view.loaded_id("demo", loaded, resolve=lambda name: "demo-cuda-gpu:1") == "demo-cuda-gpu:1"
    assert view.loaded_id("demo", loaded, resolve=lambda name: None) == "demo-generic-cpu:1"
    # an id match never asks the catalog
    assert (
        view.loaded_id("demo-cuda-gpu", loaded, resolve=lambda name: pytest.fail(name)) == "demo-cuda-gpu:1"
    )
