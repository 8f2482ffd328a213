"""The runner protocol: JSON lines over a local unix socket or loopback TCP (`transport`: a TCP
connection first presents the runner's secret), one request at a time per connection.

The client sends one line `{"op": ..., ...}`. For `chat` and `text` the runner answers with lines
`{"t": "<text>"}` as text is made (one token each while the reader keeps up, several once it falls
behind; a reasoning model's thinking goes in `"r"` beside it), the last with `"done": {"finish_reason",
"usage"}` (and "tool_calls" when the model called tools); `count` and `info` answer one
`{"result": {...}}`; so does `embed` (an embedding model's runner:
`{"input": [texts or token arrays], "dimensions"}` in, `vectors_to_wire` plus `tokens` out). Any
failure answers `{"error": {...}}` (a `FoundryError` as data).
After that final message the connection takes the next request (the server keeps idle connections
open). Closing the connection cancels the request: that is how a client leaving stops its generation.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from typing import Any

from .. import errors
from ..engine.types import GenerationParams, ResponseFormat, ToolCall, Usage

LINE_LIMIT = 64 * 1024 * 1024  # one line holds one message; a long prompt can be big
ERROR_PREFIX = "RUNNER_ERROR "  # starts the stderr line a runner prints when it cannot load its model


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a protocol message must be a JSON object")
    return message


def params_to_wire(params: GenerationParams) -> dict[str, Any]:
    data = asdict(params)
    data["stop"] = list(params.stop)
    return data


def params_from_wire(data: dict[str, Any]) -> GenerationParams:
    data = dict(data)
    fmt = data.pop("response_format", None)
    data["stop"] = tuple(data.get("stop") or ())
    data["tools"] = tuple(data.get("tools") or ())
    return GenerationParams(**data, response_format=ResponseFormat(**fmt) if fmt else None)


def usage_to_wire(usage: Usage | None) -> dict[str, int] | None:
    return asdict(usage) if usage is not None else None


def usage_from_wire(data: dict[str, Any] | None) -> Usage | None:
    return Usage(**data) if data else None


def tool_calls_to_wire(calls: tuple[ToolCall, ...]) -> list[dict[str, str]]:
    return [asdict(call) for call in calls]


def tool_calls_from_wire(data: list[dict[str, Any]] | None) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(**call) for call in data or ())


def vectors_to_wire(vectors: Any) -> dict[str, Any]:
    """A float32 matrix as `{"vectors": base64 of its little-endian bytes, "shape": [rows, dims]}`."""
    import numpy as np

    matrix = np.ascontiguousarray(vectors, dtype="<f4")
    return {"vectors": base64.b64encode(matrix.tobytes()).decode("ascii"), "shape": list(matrix.shape)}


def vectors_from_wire(data: dict[str, Any]) -> Any:
    import numpy as np

    return np.frombuffer(base64.b64decode(data["vectors"]), dtype="<f4").reshape(data["shape"])


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, errors.FoundryError):
        return {
            "class": type(exc).__name__,
            "message": exc.message,
            "param": exc.param,
            "code": exc.code,
            "status": exc.status,
        }
    return {"class": "RunnerFailed", "message": f"the model runner failed: {exc}", "status": 500}


def error_from_wire(data: dict[str, Any]) -> errors.FoundryError:
    cls = getattr(errors, str(data.get("class", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.FoundryError)):
        cls = errors.RunnerFailed
    return cls(
        str(data.get("message", "the model runner failed")),
        param=data.get("param"),
        code=data.get("code"),
        status=data.get("status"),
    )
