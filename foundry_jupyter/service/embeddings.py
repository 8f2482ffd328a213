"""`POST v1/embeddings`: vectors from an embedding model's runner, in OpenAI's answer shape.

The runner (an `EmbeddingModel`) batches concurrent requests itself; this side only sends the inputs,
and writes each vector as a list of floats or, for `encoding_format: base64` (what the `openai`
client asks for by default), as base64 of its little-endian float32 bytes.
"""

from __future__ import annotations

import base64
from typing import Any

from . import wire
from .core import FoundryService
from .schemas import EmbeddingRequest


async def create_embeddings(service: FoundryService, req: EmbeddingRequest) -> dict[str, Any]:
    runner = await service.runner_for(req.model)
    request = {"op": "embed", "input": req.inputs(), "dimensions": req.dimensions}
    result = await service.supervisor.call(runner, request)
    vectors = wire.vectors_from_wire(result)
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(vector, req.encoding_format)}
        for i, vector in enumerate(vectors)
    ]
    tokens = int(result["tokens"])
    return {
        "object": "list",
        "data": data,
        "model": runner.model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: Any, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector.tolist()]
