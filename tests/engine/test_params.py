"""Generation limits are defined once: the engine and the REST schemas refuse the same values, same words."""

from __future__ import annotations

from typing import Any

import pytest

from foundry_jupyter.engine import params as limits
from foundry_jupyter.engine.model import ChatModel
from foundry_jupyter.engine.types import GenerationParams
from foundry_jupyter.errors import InvalidRequest
from foundry_jupyter.service.schemas import ChatCompletionRequest, CompletionRequest, parse

HELLO = [{"role": "user", "content": "hello"}]

OUT_OF_RANGE = [
    ("max_tokens", 0),
    ("max_tokens", -3),
    ("temperature", -0.5),
    ("temperature", 2.5),
    ("temperature", float("nan")),
    ("top_p", 0.0),
    ("top_p", 1.5),
    ("top_k", 0),
    ("top_k", -1),
    ("stop", ["a", "b", "c", "d", "e"]),
]
IN_RANGE = [
    ("max_tokens", 1),
    ("temperature", 0.0),
    ("temperature", 2.0),
    ("top_p", 1.0),
    ("top_p", 0.01),
    ("top_k", 1),
    ("top_k", 40),
    ("stop", ["a", "b", "c", "d"]),
]


def engine_params(field: str, value: Any) -> GenerationParams:
    return GenerationParams(**{field: tuple(value) if field == "stop" else value})


def rest_refusal(body: dict[str, Any], schema: type = ChatCompletionRequest) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse(schema, body)
    return info.value


@pytest.mark.parametrize(("field", "value"), OUT_OF_RANGE)
def test_engine_and_rest_refuse_the_same_values_with_the_same_message(
    model: ChatModel, field: str, value: Any
) -> None:
    with pytest.raises(InvalidRequest) as engine:
        model.stream_chat(HELLO, engine_params(field, value))
    rest = rest_refusal({"model": "tiny", "messages": HELLO, field: value})
    assert (rest.message, rest.param) == (engine.value.message, engine.value.param)
    assert rest.message.startswith(f"Invalid value for '{field}': ")
    text = rest_refusal({"model": "tiny", "prompt": "Once", field: value}, CompletionRequest)
    assert text.message == engine.value.message
    with pytest.raises(InvalidRequest) as plain:
        model.stream_text("Once", engine_params(field, value))
    assert plain.value.message == engine.value.message


@pytest.mark.parametrize(("field", "value"), IN_RANGE)
def test_engine_and_rest_accept_the_same_bounds(model: ChatModel, field: str, value: Any) -> None:
    parse(ChatCompletionRequest, {"model": "tiny", "messages": HELLO, field: value})
    params = engine_params(field, value)
    limits.validate(params)
    if field != "stop":  # stop strings as short as "a" may end the answer at once
        stream = model.stream_chat(HELLO, GenerationParams(**{**{"max_tokens": 2}, field: value}))
        stream.close()


def test_max_completion_tokens_and_n_use_the_same_limits() -> None:
    refused = rest_refusal({"model": "tiny", "messages": HELLO, "max_completion_tokens": 0})
    assert refused.message == limits.invalid_value(
        "max_completion_tokens", "must be greater than or equal to 1"
    )
    for n in (0, 2):
        refused = rest_refusal({"model": "tiny", "messages": HELLO, "n": n})
        problem = limits.N.problem(n)
        assert problem is not None and refused.message == limits.invalid_value("n", problem)
        assert "only n=1" in refused.message


def test_openapi_bounds_come_from_the_engine_limits() -> None:
    properties = ChatCompletionRequest.model_json_schema()["properties"]
    for name in ("max_tokens", "temperature", "top_p", "top_k"):
        number = next(s for s in properties[name]["anyOf"] if s.get("type") != "null")
        bounds = {key: number[key] for key in ("minimum", "exclusiveMinimum", "maximum") if key in number}
        assert bounds == limits.LIMITS[name].json_schema(), name
    assert properties["n"]["minimum"] == properties["n"]["maximum"] == 1


def test_a_value_of_the_wrong_type_is_refused_by_the_engine() -> None:
    with pytest.raises(InvalidRequest, match=r"max_tokens.*integer"):
        limits.validate(GenerationParams(max_tokens=2.5))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"temperature.*number"):
        limits.validate(GenerationParams(temperature="hot"))  # type: ignore[arg-type]
