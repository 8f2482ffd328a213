"""The package's promises that hold before any model is involved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from foundry_jupyter.config import defaults
from foundry_jupyter.errors import ContextLengthExceeded, FoundryError, ModelNotFound

HEAVY = (
    "onnxruntime_genai",
    "onnxruntime",
    "pandas",
    "ipywidgets",
    "jupyter_server",
    "numpy",
    "huggingface_hub",
)


def test_import_is_light() -> None:
    code = f"import sys, json, foundry_jupyter; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_unknown_attribute_is_an_attribute_error() -> None:
    import foundry_jupyter

    try:
        foundry_jupyter.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = defaults(
        {
            "FOUNDRY_JUPYTER_CACHE": str(tmp_path / "c"),
            "FOUNDRY_JUPYTER_TTL": "30",
            "FOUNDRY_JUPYTER_EP": "cuda",
            "FOUNDRY_JUPYTER_CATALOGS": f"{tmp_path / 'a.json'}:{tmp_path / 'b.json'}",
        }
    )
    assert settings.cache_dir == tmp_path / "c"
    assert settings.ttl_s == 30
    assert settings.execution_provider == "cuda"
    assert settings.catalog_files == (tmp_path / "a.json", tmp_path / "b.json")


def test_default_settings() -> None:
    settings = defaults({})
    assert settings.cache_dir == Path.home() / ".foundry-jupyter" / "cache" / "models"
    assert settings.ttl_s == 600
    assert settings.execution_provider is None


def test_errors_have_the_openai_shape() -> None:
    err = ModelNotFound("no model named 'x'", param="model")
    assert err.status == 404
    assert err.to_dict() == {
        "error": {
            "message": "no model named 'x'",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert ContextLengthExceeded("too long").to_dict()["error"]["code"] == "context_length_exceeded"
    assert FoundryError("x", code="custom", status=409).status == 409
