"""Prompts: chat messages through the model's chat template, and text, into token ids."""

from __future__ import annotations

import json
import threading
from typing import Any

from foundry_jupyter.engine import reasoning, tools
from foundry_jupyter.engine.fim import FimTokens
from foundry_jupyter.engine.types import Message
from foundry_jupyter.errors import InvalidRequest

_ROLES = {"system", "user", "assistant", "tool", "developer"}


class Prompts:
    """A model's og tokenizer, used from many threads (one at a time: it is not thread-safe)."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        has_template: bool,
        text_bos: int | None,
        template: str | None = None,
        fim: FimTokens | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self._has_template = has_template
        self._text_bos = text_bos
        self._template = template
        self._fim_ids = self._single_ids(fim.names()) if fim is not None else None

    @property
    def fills_middle(self) -> bool:
        """Whether the model has fill-in-the-middle tokens (`encode_fill` works)."""
        return self._fim_ids is not None

    @property
    def reasons(self) -> bool:
        """Whether the chat template is a reasoning model's (it mentions `<think>`)."""
        return reasoning.template_reasons(self._template)

    def render_chat(
        self,
        messages: list[Message],
        tool_plan: tools.ToolPlan | None = None,
        thinking: bool | None = None,
    ) -> str:
        """The prompt; `thinking` sets the template's `enable_thinking` where it has one (None: as is)."""
        normalized = normalize_messages(tools.render_messages(messages, tool_plan or tools.NO_TOOLS))
        if not self._has_template:
            return "".join(f"{m['role']}: {m['content']}\n" for m in normalized) + "assistant: "
        options: dict[str, Any] = {}
        if thinking is not None and self._template and reasoning.template_switches_thinking(self._template):
            options["template_str"] = reasoning.template_with_thinking(self._template, thinking)
        try:
            with self._lock:
                return self._tokenizer.apply_chat_template(
                    json.dumps(normalized), add_generation_prompt=True, **options
                )
        except Exception as exc:
            raise InvalidRequest(f"The chat template could not format these messages: {exc}") from exc

    def encode(self, text: str) -> list[int]:
        with self._lock:
            return [int(t) for t in self._tokenizer.encode(text)]

    def encode_text(self, prompt: str) -> list[int]:
        """A plain text prompt's ids, starting with BOS where the tokenizer wants one."""
        if not isinstance(prompt, str) or not prompt:
            raise InvalidRequest("The prompt must be a non-empty string.", param="prompt")
        ids = self.encode(prompt)
        if self._text_bos is not None and ids[:1] != [self._text_bos]:
            ids.insert(0, self._text_bos)
        return ids

    def encode_fill(self, prefix: str, suffix: str) -> list[int]:
        """A fill-in-the-middle prompt: the model writes what goes between `prefix` and `suffix`.

        The prompt starts with the prefix, so a longer prefix (the same text, typed further) shares its
        start with the shorter one's, and a held conversation spares reading it again.
        """
        if self._fim_ids is None:
            raise InvalidRequest(
                "This model has no fill-in-the-middle tokens, so it cannot complete text before a suffix; "
                "send the request without suffix (or with an empty one), or use a code model with FIM "
                "tokens such as qwen2.5-coder.",
                param="suffix",
                code="fim_unsupported",
            )
        if not isinstance(prefix, str) or not isinstance(suffix, str) or not (prefix or suffix):
            raise InvalidRequest("The prompt and the suffix must not both be empty.", param="prompt")
        start, hole, middle = self._fim_ids
        ids = [start, *self.encode(prefix), hole, *self.encode(suffix), middle]
        if self._text_bos is not None:
            ids.insert(0, self._text_bos)
        return ids

    def _single_ids(self, names: tuple[str, ...]) -> tuple[int, ...] | None:
        """Each name's token id, or None when one of them is not a single token."""
        ids = [self.encode(name) for name in names]
        return tuple(i[0] for i in ids) if all(len(i) == 1 for i in ids) else None

    def create_stream(self) -> Any:
        """An og decoder stream: token ids in, text pieces out (one per generation)."""
        with self._lock:
            return self._tokenizer.create_stream()

    def close(self) -> None:
        self._tokenizer = None


def normalize_messages(messages: list[Message]) -> list[dict[str, str]]:
    """`messages` as plain {role, content} text for a chat template; InvalidRequest names what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list.", param="messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(
                f"messages[{i}] must be an object with a role and content.", param="messages"
            )
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}, not {role!r}.",
                param="messages",
            )
        out.append({"role": "system" if role == "developer" else role, "content": _text(message, i)})
    return out


def _text(message: Message, i: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise InvalidRequest(
                    f"messages[{i}].content: only text parts are supported.", param="messages"
                )
            texts.append(part["text"])
        return "".join(texts)
    if not isinstance(content, str):
        raise InvalidRequest(f"messages[{i}].content must be a string.", param="messages")
    return content
