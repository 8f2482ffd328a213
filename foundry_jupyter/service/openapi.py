"""`GET openapi.json`: an OpenAPI 3.1 document of every route, built from the request models in
`schemas`, the same ones that validate requests."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from .schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DownloadJobRequest,
    FoundryDownloadRequest,
    TokenCountRequest,
)

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "A model alias or full id (`name:version`).",
}

# (method, path, summary, request model, answer description, extra parameters)
ROUTES: list[tuple[str, str, str, type[BaseModel] | None, str, list[dict[str, Any]]]] = [
    (
        "get",
        "/v1/models",
        "List the cached and loaded models (OpenAI format).",
        None,
        "`{object: list, data}`",
        [],
    ),
    ("get", "/v1/models/{name}", "One model, by id or alias.", None, "A model object", [NAME]),
    (
        "post",
        "/v1/chat/completions",
        "Chat completion; SSE when `stream` is true. Loads a cached model on first use.",
        ChatCompletionRequest,
        "`chat.completion`, or `chat.completion.chunk` events",
        [],
    ),
    ("post", "/v1/completions", "Legacy text completion.", CompletionRequest, "`text_completion`", []),
    (
        "post",
        "/v1/chat/completions/tokenizer/encode/count",
        "Count the prompt tokens of a chat request.",
        TokenCountRequest,
        "`{tokenCount}`",
        [],
    ),
    (
        "get",
        "/openai/status",
        "Service status (Foundry Local).",
        None,
        "`{Endpoints, ModelDirPath, PipeName}` and camelCase twins",
        [],
    ),
    ("get", "/foundry/list", "The catalog, best variant of each alias first.", None, "Array of entries", []),
    ("get", "/openai/models", "Ids of the cached models.", None, "Array of ids", []),
    (
        "post",
        "/openai/download",
        "Download a model; streams `Total NN.NN% Downloading <file>` lines, then "
        "`[DONE]` and `{success, errorMessage}`.",
        FoundryDownloadRequest,
        "text/plain progress lines",
        [],
    ),
    (
        "get",
        "/openai/load/{name}",
        "Load a model into its own runner process.",
        None,
        "`{status: loaded|already_loaded, id, executionProvider, ttlSeconds}`",
        [
            NAME,
            {
                "name": "ttl",
                "in": "query",
                "schema": {"type": "integer", "minimum": 0},
                "description": "Idle seconds before unloading (0: never; default 600).",
            },
            {"name": "ep", "in": "query", "schema": {"type": "string"}, "description": "Execution provider."},
        ],
    ),
    (
        "get",
        "/openai/unload/{name}",
        "Unload a model.",
        None,
        "`{status: unloaded|not_loaded, id}`",
        [
            NAME,
            {
                "name": "force",
                "in": "query",
                "schema": {"type": "boolean"},
                "description": "Stop it even while it serves requests.",
            },
        ],
    ),
    ("get", "/openai/unloadall", "Unload every model.", None, "`{status, models}`", []),
    ("get", "/openai/loadedmodels", "Ids of the loaded models.", None, "Array of ids", []),
    ("get", "/openapi.json", "This document.", None, "OpenAPI 3.1", []),
    ("get", "/hardware", "CPU, memory, GPUs and execution providers.", None, "Hardware report", []),
    ("get", "/cache", "The model cache.", None, "`{location, models}`", []),
    ("delete", "/cache/{name}", "Delete a cached model (unloading it first).", None, "`{removed}`", [NAME]),
    ("get", "/loaded", "Loaded models with TTL left, memory, EP and pid.", None, "`{models}`", []),
    ("get", "/downloads", "Background downloads.", None, "`{downloads}`", []),
    ("get", "/zip-logs", "A diagnostics zip, tokens and keys removed.", None, "A zip file", []),
    ("post", "/downloads", "Start a background download.", DownloadJobRequest, "202 with the job", []),
    (
        "get",
        "/downloads/{id}",
        "One background download.",
        None,
        "The job",
        [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
    ),
    (
        "delete",
        "/downloads/{id}",
        "Cancel a background download.",
        None,
        "The job",
        [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
    ),
]


JSON = "application/json"
EVENTS = "text/event-stream"
# (method, path) -> (success status, media types) where it is not `200` with a JSON body.
ANSWERS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("post", "/v1/chat/completions"): ("200", (JSON, EVENTS)),
    ("post", "/v1/completions"): ("200", (JSON, EVENTS)),
    ("post", "/openai/download"): ("200", ("text/plain",)),
    ("post", "/downloads"): ("202", (JSON,)),
    ("get", "/zip-logs"): ("200", ("application/zip",)),
}


@cache
def _components() -> dict[str, Any]:
    models = sorted({route[3] for route in ROUTES if route[3] is not None}, key=lambda m: m.__name__)
    _, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas = dict(top.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA
    return schemas


def spec(server_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, model, answer, params in ROUTES:
        success, media = ANSWERS.get((method, path), ("200", (JSON,)))
        operation: dict[str, Any] = {
            "summary": summary,
            "security": [{"token": []}],
            "responses": {
                success: {"description": answer, "content": {m: {} for m in media}},
                "4XX": {
                    "description": "The caller's mistake",
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
        if params:
            operation["parameters"] = params
        if model is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
            }
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "foundry-jupyter",
            "version": __version__,
            "description": "OpenAI-compatible and Foundry Local REST API served by the Jupyter server.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "The Jupyter server's token."}
            },
        },
    }
