"""Reasoning models: the thinking a model writes in `<think>…</think>`, kept apart from its answer.

DeepSeek-R1 distills and Qwen3 think before they answer. Their chat templates say so (they mention
`<think>`); some open the block in the prompt itself (the output then starts inside the thinking and
only closes it), others leave it to the model. `ThinkingSplitter` takes streamed text pieces, in which
a tag may arrive cut across pieces, and returns `(reasoning, answer)` text, as DeepSeek's and vLLM's
APIs send `reasoning_content` and `content`. Thinking that never closes (the token budget ran out) is
all reasoning; an output that does not open with `<think>` is all answer.

Turning thinking off is the chat template's business: Qwen3's reads `enable_thinking`, which
`template_with_thinking` sets in front of the template (og's `apply_chat_template` takes no variables).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace

from foundry_jupyter.engine.types import Delta

OPEN = "<think>"
CLOSE = "</think>"
THINKING_SWITCH = "enable_thinking"  # the template variable Qwen3 (and vLLM's chat_template_kwargs) use

_START, _THINKING, _ANSWER = "start", "thinking", "answer"


def template_reasons(template: str | None) -> bool:
    """Whether a chat template belongs to a model that thinks in `<think>` blocks."""
    return bool(template) and OPEN in template


def template_switches_thinking(template: str | None) -> bool:
    """Whether the template turns thinking off on request (`enable_thinking`)."""
    return bool(template) and THINKING_SWITCH in template


def template_with_thinking(template: str, thinking: bool) -> str:
    """The template with `enable_thinking` set: a `set` in front works with og's template engine."""
    return "{%- set " + THINKING_SWITCH + " = " + json.dumps(thinking) + " -%}" + template


def prompt_opens_thinking(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open `<think>` block, so the output starts thinking."""
    return prompt.rstrip().endswith(OPEN)


def _partial_tag(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could be the start of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkingSplitter:
    """Feed text pieces in order; get `(reasoning, answer)` pieces that are safe to show.

    Text that could be the start of a tag, and white space at the edges of the thinking, is held back
    until a later piece shows what it is, so neither part ever shows a piece of a tag. White space
    around the thinking and at the start of the answer is dropped, as the APIs that send
    `reasoning_content` do.
    """

    def __init__(self, *, thinking: bool = False) -> None:
        """`thinking`: the prompt opened the block, so the output starts inside it."""
        self._state = _THINKING if thinking else _START
        self._held = ""
        self._reasoning_started = False
        self._answer_started = False
        self.reasoned = thinking  # whether this output has a thinking part

    def feed(self, piece: str) -> tuple[str, str]:
        self._held += piece
        reasoning, answer = "", ""
        while True:
            if self._state == _START:
                text = self._held.lstrip()
                if text.startswith(OPEN):
                    self._state, self._held, self.reasoned = _THINKING, text[len(OPEN) :], True
                    continue
                if OPEN.startswith(text):  # nothing yet, or a piece of the opening tag
                    return reasoning, answer
                self._state = _ANSWER
                continue
            if self._state == _THINKING:
                end = self._held.find(CLOSE)
                if end >= 0:
                    reasoning += self._thought(self._held[:end].rstrip())
                    self._state, self._held = _ANSWER, self._held[end + len(CLOSE) :]
                    continue
                body = self._held[: len(self._held) - _partial_tag(self._held, CLOSE)]
                keep = len(self._held) - len(body.rstrip())
                reasoning += self._thought(self._held[: len(self._held) - keep])
                self._held = self._held[len(self._held) - keep :]
                return reasoning, answer
            # the answer: after thinking, its leading white space is dropped
            if self.reasoned and not self._answer_started:
                self._held = self._held.lstrip()
            self._answer_started = self._answer_started or bool(self._held)
            answer, self._held = answer + self._held, ""
            return reasoning, answer

    def flush(self) -> tuple[str, str]:
        """What is held at the end of the output: thinking that never closed stays reasoning."""
        held, self._held = self._held, ""
        if self._state == _THINKING:
            return self._thought(held.rstrip()), ""
        if self._state == _START:
            return "", held
        return "", held.lstrip() if self.reasoned and not self._answer_started else held

    def _thought(self, text: str) -> str:
        if not self._reasoning_started:
            text = text.lstrip()
            self._reasoning_started = bool(text)
        return text


def split_deltas(
    deltas: Iterator[Delta], *, thinking: bool, count_tokens: Callable[[str], int] | None = None
) -> Iterator[Delta]:
    """`deltas` with their thinking moved from `text` to `reasoning`; `thinking`: the prompt opened it.
    `count_tokens` gives the last delta's `usage.reasoning_tokens` (the thinking text re-encoded)."""
    splitter = ThinkingSplitter(thinking=thinking)
    thought: list[str] = []
    try:
        for delta in deltas:
            reasoning, answer = splitter.feed(delta.text)
            if delta.finish_reason is None:
                thought.append(reasoning)
                if reasoning or answer:
                    yield Delta(text=answer, reasoning=reasoning)
                continue
            more_reasoning, more_answer = splitter.flush()
            reasoning += more_reasoning
            thought.append(reasoning)
            usage = delta.usage
            if usage is not None and count_tokens is not None and any(thought):
                usage = replace(usage, reasoning_tokens=count_tokens("".join(thought)))
            yield Delta(
                text=answer + more_answer,
                reasoning=reasoning,
                finish_reason=delta.finish_reason,
                usage=usage,
                tool_calls=delta.tool_calls,
            )
            return
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()
