"""The engine's vocabulary: what a generation request asks for and what comes back.

Plain dataclasses, free of onnxruntime-genai, so front ends and the runner protocol can import them
cheaply and serialise them with `dataclasses.asdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Message = dict[str, Any]  # an OpenAI chat message: {"role": ..., "content": ...}
FinishReason = Literal["stop", "length", "tool_calls", "cancelled", "error"]
ToolChoice = (
    str | dict[str, Any] | None
)  # "none" | "auto" | "required" | {"type": "function", "function": {"name"}}


@dataclass(frozen=True)
class ResponseFormat:
    """Structured output, applied through og guidance."""

    kind: Literal["text", "json_object", "json_schema", "regex", "lark"] = "text"
    schema: dict[str, Any] | None = None  # for json_schema
    grammar: str | None = None  # for regex / lark


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int | None = None  # None: up to the model's context length (capped by DEFAULT_MAX_TOKENS)
    temperature: float | None = None  # None: the model's default; 0: greedy
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    response_format: ResponseFormat | None = None
    tools: tuple[dict[str, Any], ...] = ()  # OpenAI tool specs: {"type": "function", "function": {...}}
    tool_choice: ToolChoice = None  # None: "auto" when tools are given
    parallel_tool_calls: bool = True
    thinking: bool | None = None  # a reasoning model's thinking on or off; None: its chat template's default


@dataclass(frozen=True)
class ToolCall:
    """A function call the model made; `arguments` is a JSON object as text, as in OpenAI's API."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens served from a held conversation instead of recomputed
    reasoning_tokens: int = 0  # completion tokens of a reasoning model's thinking (its text re-encoded)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass(frozen=True)
class Delta:
    """One streamed piece. The last one of a generation has `finish_reason` and `usage` set."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # set on the last delta only
    reasoning: str = ""  # thinking text of a reasoning model (`reasoning_content`), kept out of `text`


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    usage: Usage
    model: str = ""
    execution_provider: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""  # a reasoning model's thinking; `text` is the answer without it
