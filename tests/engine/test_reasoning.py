"""Reasoning models: thinking split from the answer, on text cut anywhere and on real model output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from foundry_jupyter.engine import reasoning
from foundry_jupyter.engine.model import ChatModel
from foundry_jupyter.engine.reasoning import ThinkingSplitter
from foundry_jupyter.engine.types import GenerationParams, ResponseFormat
from tests.support.reasoning import OPENS_THINKING, SWITCHES_THINKING, with_template

ASK = [{"role": "user", "content": "Why is the sky blue?"}]


def split(pieces: list[str], *, thinking: bool = False) -> tuple[str, str]:
    splitter = ThinkingSplitter(thinking=thinking)
    reasoning_parts, answer_parts = [], []
    for piece in pieces:
        r, a = splitter.feed(piece)
        reasoning_parts.append(r)
        answer_parts.append(a)
    r, a = splitter.flush()
    return "".join(reasoning_parts) + r, "".join(answer_parts) + a


def cuts(text: str) -> Iterator[list[str]]:
    """`text` cut into three pieces in every possible way."""
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            yield [text[:i], text[i:j], text[j:]]


@pytest.mark.parametrize(
    ("text", "thinking", "expected"),
    [
        (
            "<think>\nLet me see.\n</think>\n\nBlue light scatters.",
            False,
            ("Let me see.", "Blue light scatters."),
        ),
        ("\n<think>a < b </thin</think>ok", False, ("a < b </thin", "ok")),
        ("Let me see.\n</think>\n\nIt scatters.", True, ("Let me see.", "It scatters.")),
        ("Still thinking when the budget ran out <", True, ("Still thinking when the budget ran out <", "")),
        ("<think>never closed", False, ("never closed", "")),
        ("  Just an answer, <think> later is text", False, ("", "  Just an answer, <think> later is text")),
        ("<thin", False, ("", "<thin")),
        ("", True, ("", "")),
    ],
)
def test_split_is_the_same_wherever_the_text_is_cut(text, thinking, expected):
    for pieces in cuts(text):
        assert split(pieces, thinking=thinking) == expected, pieces
    assert split(list(text), thinking=thinking) == expected


def test_no_piece_of_a_tag_is_ever_shown():
    text = "<think>I weigh it</think>The answer"
    splitter = ThinkingSplitter()
    shown = []
    for ch in text:
        shown.extend(splitter.feed(ch))
    shown.extend(splitter.flush())
    assert not any("<" in piece or ">" in piece for piece in shown)


def test_templates_and_prompts_say_who_reasons():
    assert reasoning.template_reasons(OPENS_THINKING) and not reasoning.template_switches_thinking(
        OPENS_THINKING
    )
    assert reasoning.template_switches_thinking(SWITCHES_THINKING)
    assert not reasoning.template_reasons(None) and not reasoning.template_reasons("{{ messages }}")
    assert reasoning.prompt_opens_thinking("<|im_start|>assistant\n<think>\n")
    assert not reasoning.prompt_opens_thinking("<|im_start|>assistant\n<think>\n\n</think>\n\n")


# ---- real output of the tiny model ----------------------------------------------------------------
@pytest.fixture(scope="module")
def opens(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatModel]:
    folder = with_template(tiny_model_dir, tmp_path_factory.mktemp("think") / "tiny", OPENS_THINKING)
    with ChatModel.load(folder, model_id="thinking") as m:
        yield m


@pytest.fixture(scope="module")
def switches(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatModel]:
    folder = with_template(tiny_model_dir, tmp_path_factory.mktemp("switch") / "tiny", SWITCHES_THINKING)
    with ChatModel.load(folder, model_id="switching") as m:
        yield m


GREEDY = GenerationParams(max_tokens=24, temperature=0)


def test_thinking_that_never_closes_is_all_reasoning(opens: ChatModel, model: ChatModel):
    assert opens.reasons and not model.reasons
    raw = opens.complete_text(opens.render_chat(ASK), GREEDY)  # the same prompt, nothing split
    answer = opens.complete_chat(ASK, GREEDY)
    assert answer.finish_reason == "length" and raw.text.strip()
    assert answer.reasoning == raw.text.strip() and answer.text == ""
    deltas = list(opens.stream_chat(ASK, GREEDY))
    assert "".join(d.reasoning for d in deltas) == answer.reasoning
    assert "".join(d.text for d in deltas) == ""
    assert model.complete_chat(ASK, GREEDY).reasoning == ""  # a model that does not reason: untouched


def test_a_closing_tag_the_model_writes_splits_its_output(opens: ChatModel):
    # A grammar makes the random model write the closing tag, token by token, as a real model would.
    guided = GenerationParams(
        max_tokens=40,
        temperature=0,
        response_format=ResponseFormat(kind="regex", grammar=r"[a-z]{3,8} [a-z]{3,8}</think>[a-z]{3,8}"),
    )
    raw = opens.complete_text(opens.render_chat(ASK), guided).text
    thought, _, answer = raw.partition("</think>")
    assert answer, raw
    deltas = list(opens.stream_chat(ASK, guided))
    assert len(deltas) > 3  # the tag came in pieces
    assert "".join(d.reasoning for d in deltas) == thought
    assert "".join(d.text for d in deltas) == answer
    done = opens.complete_chat(ASK, guided)
    assert (done.reasoning, done.text) == (thought, answer)


def test_json_output_is_never_taken_for_thinking(opens: ChatModel):
    params = GenerationParams(
        max_tokens=60,
        temperature=0,
        response_format=ResponseFormat(
            kind="json_schema",
            schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        ),
    )
    answer = opens.complete_chat(ASK, params)
    assert answer.reasoning == "" and answer.text.startswith("{")


def test_a_model_that_does_not_open_thinking_answers_plainly(switches: ChatModel):
    raw = switches.complete_text(switches.render_chat(ASK), GREEDY).text
    answer = switches.complete_chat(ASK, GREEDY)
    assert switches.reasons and answer.text == raw and answer.reasoning == ""


def test_thinking_off_where_the_template_can(switches: ChatModel, opens: ChatModel):
    off = GenerationParams(max_tokens=24, temperature=0, thinking=False)
    prompt = switches.render_chat(ASK, thinking=False)
    assert prompt.endswith("<think>\n\n</think>\n\n")
    assert switches.render_chat(ASK, thinking=True) == switches.render_chat(ASK)
    raw = switches.complete_text(prompt, GREEDY).text
    answer = switches.complete_chat(ASK, off)
    assert (answer.reasoning, answer.text) == ("", raw)
    # A template without the switch renders as it always does.
    assert opens.render_chat(ASK, thinking=False) == opens.render_chat(ASK)
