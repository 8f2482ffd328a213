"""The route table's types, and `GET openapi.json` built from a route table.

Each route is declared once (in `server.handlers`) as a `Route`: its path under the prefix, its handler
and one `Operation` per HTTP method, naming the request model from `schemas` that validates the body.
The server registers its handlers from that table and this module documents the same table, so the
OpenAPI document cannot drift from what is served.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

JSON = "application/json"
EVENTS = "text/event-stream"
TEXT = "text/plain"


@dataclass(frozen=True)
class Param:
    """A query parameter, or (in `PATH_PARAMS`) a path parameter with the regex its segment matches."""

    name: str
    description: str = ""
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    pattern: str = "[^/]+"  # path parameters only

    def to_openapi(self, where: str) -> dict[str, Any]:
        param: dict[str, Any] = {"name": self.name, "in": where, "schema": dict(self.schema)}
        if where == "path":
            param["required"] = True
        if self.description:
            param["description"] = self.description
        return param


# `{name}` in a route's path: its regex (for the server) and its documentation (for the spec).
PATH_PARAMS = {
    p.name: p
    for p in (
        # ids may hold ':' and, for registered models, '/'
        Param("name", "A model alias or full id (`name:version`).", pattern=r"[^/]+(?:/[^/]+)*"),
        Param("job_id", "A background download's id.", pattern=r"[A-Za-z0-9_-]+"),
        Param("response_id", "A stored response's id (`resp_...`).", pattern=r"[A-Za-z0-9_-]+"),
        Param("engine", "A remote engine's name.", pattern=r"[A-Za-z0-9][A-Za-z0-9._-]*"),
        Param("rest", pattern=".*"),
    )
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Operation:
    """One method of a route, as the spec describes it."""

    summary: str
    answer: str  # what the success answer holds
    body: type[BaseModel] | None = None  # the request model that validates the JSON body
    query: tuple[Param, ...] = ()
    status: int = 200
    media: tuple[str, ...] = (JSON,)
    # Loads, unloads or downloads. Foundry's clients send such requests as GET with the token, but a
    # browser sends its login cookie with any top-level navigation, from any site: a request that
    # carries only the cookie must then pass Jupyter's XSRF check, as POSTs do.
    changes_state: bool = False


@dataclass(frozen=True)
class Route:
    """A path under the prefix (`v1/models/{name}`), the handler class serving it, and its operations
    by lower-case HTTP method. A route without operations is served but not documented (the catch-all)."""

    path: str
    handler: type
    operations: Mapping[str, Operation]

    @property
    def pattern(self) -> str:
        """The path as the server's URL regex: each `{param}` becomes a named group."""
        return _PLACEHOLDER.sub(lambda m: f"(?P<{m[1]}>{PATH_PARAMS[m[1]].pattern})", self.path)

    @property
    def path_params(self) -> list[str]:
        return _PLACEHOLDER.findall(self.path)


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


def version() -> str:
    try:
        return metadata.version("foundry-jupyter")
    except metadata.PackageNotFoundError:  # run from a source checkout that was never installed
        return "0+unknown"


@cache
def _components(bodies: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    _, top = models_json_schema(
        [(m, "validation") for m in bodies], ref_template="#/components/schemas/{model}"
    )
    schemas = dict(top.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA
    return schemas


def _operation(route: Route, op: Operation) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": op.summary,
        "security": [{"token": []}],
        "responses": {
            str(op.status): {"description": op.answer, "content": {m: {} for m in op.media}},
            "4XX": {
                "description": "The caller's mistake",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    params = [PATH_PARAMS[name].to_openapi("path") for name in route.path_params]
    params += [q.to_openapi("query") for q in op.query]
    if params:
        operation["parameters"] = params
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}},
        }
    return operation


def spec(server_url: str, routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`, served at `server_url`."""
    paths: dict[str, dict[str, Any]] = {}
    bodies: set[type[BaseModel]] = set()
    for route in routes:
        for method, op in route.operations.items():
            paths.setdefault(f"/{route.path}", {})[method] = _operation(route, op)
            if op.body is not None:
                bodies.add(op.body)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "foundry-jupyter",
            "version": version(),
            "description": "OpenAI-compatible and Foundry Local REST API served by the Jupyter server.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": _components(tuple(sorted(bodies, key=lambda m: m.__name__))),
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "The Jupyter server's token."}
            },
        },
    }
