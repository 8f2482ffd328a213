"""Foundry Local management routes, the sidebar's extras, the OpenAPI document and the kernel env."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote

import pytest

from foundry_jupyter import config
from foundry_jupyter.errors import ModelNotFound
from foundry_jupyter.server.handlers import ROUTES

from .conftest import TINY, runner_processes
from .test_errors import assert_openai_error


async def test_openai_status_both_casings(http, base_url, foundry_cache):
    status = (await http.get("openai/status")).json()
    endpoint = base_url.rstrip("/")
    assert status["Endpoints"] == status["endpoints"] == [endpoint]
    assert status["ModelDirPath"] == status["modelDirPath"] == str(foundry_cache)
    assert status["PipeName"] == status["pipeName"]
    assert status["pid"] == os.getpid()


async def test_foundry_list_is_a_bare_array_of_entries(http):
    entries = (await http.get("foundry/list")).json()
    assert isinstance(entries, list) and entries
    tiny = next(e for e in entries if e["name"] == TINY)
    assert tiny["alias"] == "tiny" and tiny["cached"] is True
    for key in ("runtime", "fileSizeMb", "task", "license", "promptTemplate", "maxOutputTokens", "version"):
        assert key in tiny
    assert set(tiny["runtime"]) == {"deviceType", "executionProvider"}


async def test_openai_models_lists_cached_ids(http):
    assert (await http.get("openai/models")).json() == [TINY]


async def test_cache_listing_and_removal(http, foundry_cache):
    cache = (await http.get("cache")).json()
    assert cache["location"] == str(foundry_cache)
    [model] = cache["models"]
    for key in ("id", "alias", "device", "executionProvider", "sizeBytes", "path", "lastUsed"):
        assert key in model
    assert model["id"] == TINY and model["sizeBytes"] > 0
    await http.get("openai/load/tiny")
    removed = await http.delete("cache/tiny")
    assert removed.json() == {"removed": TINY}
    assert runner_processes() == []
    assert (await http.get("cache")).json()["models"] == []
    assert (await http.get("openai/models")).json() == []
    # a chat for a model that is no longer downloaded says how to get it
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    answer = await http.post("v1/chat/completions", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "model_not_cached"
    assert "download" in answer.json()["error"]["message"]


async def test_hardware_report(http):
    report = (await http.get("hardware")).json()
    assert isinstance(report, dict) and report
    assert "cpu" in str(report).lower()


async def test_loaded_is_empty_at_start(http):
    assert (await http.get("loaded")).json() == {"models": []}
    assert (await http.get("openai/loadedmodels")).json() == []


async def test_openapi_covers_every_route(http, base_url):
    spec = (await http.get("openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert spec["servers"] == [{"url": base_url.rstrip("/")}]
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert documented == {(f"/{r.path}", method) for r in ROUTES for method in r.operations}
    chat = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
    assert chat["schema"]["$ref"] == "#/components/schemas/ChatCompletionRequest"
    schema = spec["components"]["schemas"]["ChatCompletionRequest"]
    assert "messages" in schema["required"] and schema["properties"]["temperature"]
    refs = [s for s in _refs(spec) if s.startswith("#/components/schemas/")]
    assert all(r.rsplit("/", 1)[1] in spec["components"]["schemas"] for r in refs)


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


async def test_service_url_and_token_exported_for_kernels(server, base_url, token):
    assert os.environ[config.ENV_SERVICE_URL].endswith(server.base_url + "foundry/")
    assert os.environ[config.ENV_SERVICE_TOKEN] == token


async def test_config_traits_come_from_the_environment(monkeypatch):
    from foundry_jupyter.server.app import FoundryApp

    monkeypatch.setenv(config.ENV_TTL, "42")
    monkeypatch.setenv(config.ENV_MAX_LOADED, "2")
    monkeypatch.setenv(config.ENV_EP, "cpu")
    app = FoundryApp()
    assert (app.default_ttl, app.max_loaded_models, app.default_ep) == (42, 2, "cpu")
    settings = app.settings_object()
    assert settings.ttl_s == 42 and settings.execution_provider == "cpu"


async def test_resolve_names_the_variant_an_alias_stands_for(http):
    by_alias = (await http.get("foundry/resolve/tiny")).json()
    assert (by_alias["name"], by_alias["alias"], by_alias["cached"]) == (TINY, "tiny", True)
    assert set(by_alias["runtime"]) == {"deviceType", "executionProvider"}
    assert (await http.get(f"foundry/resolve/{TINY}")).json() == by_alias
    assert (await http.delete("cache/tiny")).status_code == 200
    assert (await http.get("foundry/resolve/tiny")).json()["cached"] is False


async def test_resolve_errors_are_openai_shaped(http):
    assert_openai_error(await http.get("foundry/resolve/no-such-model"), 404, code="model_not_found")
    folder = await http.get("foundry/resolve/" + quote("/tmp", safe=""))
    assert_openai_error(folder, 400, code="invalid_model_name")


async def test_the_kernels_server_backend_asks_the_server(http, base_url, token):
    from foundry_jupyter.kernel.backends import ServiceBackend

    backend = ServiceBackend(base_url, token)
    try:
        resolved = await asyncio.to_thread(backend.resolve, "tiny")
        assert resolved == (await http.get("foundry/resolve/tiny")).json()
        with pytest.raises(ModelNotFound):
            await asyncio.to_thread(backend.resolve, "no-such-model")
    finally:
        backend.close()
