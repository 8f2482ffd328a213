"""Reasoning models over the OpenAI routes: `reasoning_content` apart from `content`, with the real
`openai.AsyncOpenAI` client and the tiny model under chat templates that think."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import openai
import pytest

from foundry_jupyter.engine.types import GenerationParams, ResponseFormat
from foundry_jupyter.service import openai as chat
from foundry_jupyter.service import wire
from tests.support.reasoning import OPENS_THINKING, SWITCHES_THINKING, with_template

from .conftest import TINY

THINKS = "tiny-think-generic-cpu:1"  # the prompt opens <think> (DeepSeek-R1 distills)
SWITCHES = "tiny-switch-generic-cpu:1"  # the model may open it; enable_thinking=false closes it (Qwen3)
QUESTION = "Why is the sky blue?"
ASK = [{"role": "user", "content": QUESTION}]
ASKED = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"  # what the templates render
GREEDY = {"max_tokens": 24, "temperature": 0}


@pytest.fixture
def foundry_cache(foundry_cache: Path, tiny_model_dir: Path, tmp_path: Path) -> Path:
    for model_id, template in ((THINKS, OPENS_THINKING), (SWITCHES, SWITCHES_THINKING)):
        folder = foundry_cache / "foundry-jupyter" / model_id.replace(":", "-")
        with_template(tiny_model_dir, tmp_path / model_id.replace(":", "-"), template)
        shutil.move(tmp_path / model_id.replace(":", "-"), folder)
        (folder / "inference_model.json").write_text(json.dumps({"Name": model_id}))
    return foundry_cache


async def raw_text(client, model: str, prompt: str) -> str:
    """What the model writes after `prompt`, unsplit (a legacy completion of the same tokens)."""
    return (await client.completions.create(model=model, prompt=prompt, **GREEDY)).choices[0].text


async def test_models_and_the_catalog_say_which_models_reason(client, http):
    models = {m.id: m.model_dump() for m in (await client.models.list()).data}
    assert "reasoning" in models[THINKS]["capabilities"]
    assert "reasoning" in models[SWITCHES]["capabilities"]
    assert "reasoning" not in models[TINY]["capabilities"]
    catalog = {e["id"]: e for e in (await http.get("foundry/list")).json()}
    assert catalog[THINKS]["supportsReasoning"] is True and catalog[TINY]["supportsReasoning"] is False
    assert "reasoning" in catalog["deepseek-r1-distill-qwen-1.5b-generic-cpu:1"]["capabilities"]


async def test_thinking_comes_as_reasoning_content_streamed_or_not(client):
    raw = await raw_text(client, THINKS, ASKED + "<think>\n")
    answer = await client.chat.completions.create(model=THINKS, messages=ASK, **GREEDY)
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "length"  # the budget ran out inside the thinking
    assert message.reasoning_content == raw.strip() and message.content == ""
    assert 0 < answer.usage.completion_tokens_details.reasoning_tokens <= answer.usage.completion_tokens

    stream = await client.chat.completions.create(model=THINKS, messages=ASK, stream=True, **GREEDY)
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == message.reasoning_content
    assert "".join(d.content or "" for d in deltas) == ""
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_a_model_that_does_not_think_answers_in_content(client):
    raw = await raw_text(client, SWITCHES, ASKED)
    answer = await client.chat.completions.create(model=SWITCHES, messages=ASK, **GREEDY)
    assert answer.choices[0].message.content == raw
    assert getattr(answer.choices[0].message, "reasoning_content", None) is None
    assert answer.usage.completion_tokens_details.reasoning_tokens == 0
    plain = await client.chat.completions.create(model=TINY, messages=ASK, **GREEDY)
    assert getattr(plain.choices[0].message, "reasoning_content", None) is None


async def test_thinking_off_by_chat_template_kwargs_or_reasoning_effort(client):
    raw = await raw_text(client, SWITCHES, ASKED + "<think>\n\n</think>\n\n")
    off = {"chat_template_kwargs": {"enable_thinking": False}}
    answer = await client.chat.completions.create(model=SWITCHES, messages=ASK, extra_body=off, **GREEDY)
    assert answer.choices[0].message.content == raw
    assert getattr(answer.choices[0].message, "reasoning_content", None) is None
    effort = await client.chat.completions.create(
        model=SWITCHES, messages=ASK, reasoning_effort="none", **GREEDY
    )
    assert effort.choices[0].message.content == raw
    on = await client.chat.completions.create(
        model=SWITCHES, messages=ASK, extra_body={"chat_template_kwargs": {"enable_thinking": True}}, **GREEDY
    )
    assert on.choices[0].message.content == await raw_text(client, SWITCHES, ASKED)
    high = await client.chat.completions.create(
        model=SWITCHES, messages=ASK, reasoning_effort="high", **GREEDY
    )
    assert high.choices[0].message.content == on.choices[0].message.content  # only "none" changes it
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model=SWITCHES, messages=ASK, extra_body={"reasoning_effort": "extreme"}, **GREEDY
        )
    assert "reasoning_effort" in info.value.body["message"]


async def test_a_closing_tag_written_by_the_model_crosses_the_runner_split(service):
    # The REST schema offers no regex grammar, so this drives the runner the way the route does.
    guided = GenerationParams(
        max_tokens=40,
        temperature=0,
        response_format=ResponseFormat(kind="regex", grammar=r"[a-z]{3,8} [a-z]{3,8}</think>[a-z]{3,8}"),
    )
    request = {"op": "chat", "messages": ASK, "params": wire.params_to_wire(guided)}
    stream = await chat.GenerationStream.open(service, THINKS, request)
    parts = [part async for part in stream.parts()]
    thought = "".join(r for r, _ in parts)
    text = "".join(t for _, t in parts)
    assert thought and text and "<" not in thought + text
    unsplit = await chat.GenerationStream.open(
        service, THINKS, {"op": "text", "prompt": ASKED + "<think>\n", "params": wire.params_to_wire(guided)}
    )
    assert "".join([p async for p in unsplit.pieces()]) == f"{thought}</think>{text}"
    answer = await chat.collect_chat(await chat.GenerationStream.open(service, THINKS, request))
    message = answer["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == (thought, text)
