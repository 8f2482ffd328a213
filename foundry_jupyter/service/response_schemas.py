"""Pydantic models of `POST v1/responses` (OpenAI's Responses API), beside the chat ones in `schemas`.

The same rules as there: unknown fields are ignored, known ones are checked, and what this server
cannot honour (images, hosted tools, background runs, server-side conversations) is refused with a
message saying so. Sampling bounds come from `schemas` (and so from `engine.params`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .schemas import (
    FunctionName,
    MaxTokens,
    ParametersSchema,
    RequestEp,
    RequestTtl,
    Temperature,
    TopP,
    _Body,
    check_tool_choice,
)

_UNSUPPORTED_PARTS = {"input_image", "input_file", "input_audio"}
_UNSUPPORTED_ITEMS = {
    "item_reference": "item_reference inputs are not supported; send the item itself, or chain with "
    "previous_response_id",
    "reasoning": "reasoning items are not supported: the models served here return none",
}


class InputText(_Body):
    type: Literal["input_text"]
    text: str


class OutputText(_Body):
    type: Literal["output_text"]
    text: str


class Refusal(_Body):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[InputText | OutputText | Refusal, Field(discriminator="type")]


def _refuse_unsupported_parts(value: Any) -> Any:
    if isinstance(value, list):
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _UNSUPPORTED_PARTS:
                raise ValueError(f"{kind} content is not supported: the models served here read text only")
    return value


class MessageItem(_Body):
    """A message: `{role, content}` with a string or input_text / output_text / refusal parts."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[ContentPart] = Field(description="The text, or a list of text parts.")
    id: str | None = None
    status: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        return _refuse_unsupported_parts(value)

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.refusal if isinstance(p, Refusal) else p.text for p in self.content)


class FunctionCallItem(_Body):
    """A call the model made (from a previous response's output)."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: FunctionName
    arguments: str = Field(description="The arguments, a JSON object as text.")
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(_Body):
    """The result of a call, for the model to read."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[InputText] = Field(description="The call's result, as text.")
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


def _item_kind(value: Any) -> str:
    # Messages may leave out `type` (OpenAI's "easy input message").
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")
    return kind or "message"


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_kind),
]


class FunctionTool(_Body):
    """A function tool, in the Responses API's flat shape."""

    type: Literal["function"] = Field(description="Only function tools are supported.")
    name: FunctionName
    description: str | None = None
    parameters: ParametersSchema = None
    strict: bool | None = None

    def as_chat(self) -> dict[str, Any]:
        function = self.model_dump(exclude_none=True, exclude={"type"})
        return {"type": "function", "function": function}


class FunctionChoice(_Body):
    type: Literal["function"]
    name: str


class FormatText(_Body):
    type: Literal["text"]


class FormatJsonObject(_Body):
    type: Literal["json_object"]


class FormatJsonSchema(_Body):
    type: Literal["json_schema"]
    name: FunctionName
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON schema the answer follows.")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[FormatText | FormatJsonObject | FormatJsonSchema, Field(discriminator="type")]


class TextConfig(_Body):
    format: TextFormat = Field(default_factory=lambda: FormatText(type="text"))


class ResponseCreateRequest(_Body):
    """`POST v1/responses`."""

    model: str = Field(min_length=1, description="A model alias or full id (`name:version`).")
    input: Annotated[
        Annotated[str, Tag("str")] | Annotated[list[InputItem], Tag("list[item]")],
        Discriminator(lambda value: "str" if isinstance(value, str) else "list[item]"),
    ] = Field(description="A text, or a list of items: messages, function_call and function_call_output.")
    instructions: str | None = Field(
        default=None, description="A system message put first; not carried over by previous_response_id."
    )
    previous_response_id: str | None = Field(
        default=None, min_length=1, description="Continue the conversation of a stored response."
    )
    store: bool = Field(default=True, description="Keep the response for GET and previous_response_id.")
    stream: bool = False
    max_output_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    tools: list[FunctionTool] | None = Field(default=None, description="Functions the model may call.")
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = Field(default=None, description="Up to 16 pairs, echoed back.")
    truncation: Literal["disabled", "auto"] | None = None
    background: bool | None = None
    user: str | None = None
    ttl: RequestTtl = None
    ep: RequestEp = None

    @field_validator("input", mode="before")
    @classmethod
    def _known_items(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("must hold at least one item")
            for item in value:
                kind = item.get("type") if isinstance(item, dict) else None
                if kind in _UNSUPPORTED_ITEMS:
                    raise ValueError(_UNSUPPORTED_ITEMS[kind])
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _function_tools_only(cls, value: Any) -> Any:
        for tool in value or ():
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function":
                raise ValueError(f"only function tools are supported, not {kind!r}")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and len(value) > 16:
            raise ValueError("must hold at most 16 pairs")
        return value

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> ResponseCreateRequest:
        chosen = self.tool_choice.name if isinstance(self.tool_choice, FunctionChoice) else None
        check_tool_choice([tool.name for tool in self.tools or ()], self.tool_choice, chosen)
        if self.background:
            raise ValueError("background responses are not supported; send the request without background")
        if self.truncation == "auto":
            raise ValueError(
                "truncation 'auto' is not supported: a conversation longer than the model's context "
                "answers context_length_exceeded"
            )
        return self

    def input_items(self) -> list[MessageItem | FunctionCallItem | FunctionCallOutputItem]:
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)

    def text_format(self) -> FormatText | FormatJsonObject | FormatJsonSchema:
        return self.text.format if self.text is not None else FormatText(type="text")
