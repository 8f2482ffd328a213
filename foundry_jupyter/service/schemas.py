"""Pydantic models of the request bodies the service accepts.

The same models validate requests and generate `openapi.json`, so the spec cannot drift from what is
enforced. Unknown fields are ignored (OpenAI clients send many optional ones); known fields are
checked for type and range, and fields we cannot honour are refused with a message saying so.
Generation limits (max_tokens, temperature, top_p, top_k, n, stop) and their messages come from
`engine.params`, so the engine and the REST API refuse the same values with the same words.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..engine import params as limits
from ..errors import InvalidRequest

Role = Literal["system", "developer", "user", "assistant", "tool"]


class _Body(BaseModel):
    # strict: JSON types as OpenAI checks them ("stream": "yes" or "max_tokens": "5" is a 400, not coerced)
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


class TextPart(_Body):
    type: Literal["text"]
    text: str


FunctionName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="1-64 letters, digits, `_` or `-`.")
]


def _object_schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and value.get("type", "object") != "object":
        raise ValueError('the parameters schema must describe a JSON object ("type": "object")')
    return value


# A function tool's arguments schema, in the chat and the Responses shapes alike.
ParametersSchema = Annotated[
    dict[str, Any] | None,
    AfterValidator(_object_schema),
    Field(description="A JSON schema of the arguments object (omitted: no arguments)."),
]


class FunctionCall(_Body):
    name: str
    arguments: str | dict[str, Any] = Field(description="The arguments, a JSON object (as text).")


class ToolCallSpec(_Body):
    """A tool call in an assistant message of the history."""

    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Body):
    role: Role = Field(description="Who wrote the message.")
    content: str | list[TextPart] | None = Field(
        default=None, description="The text, or a list of `{type: text, text}` parts."
    )
    name: str | None = None
    tool_calls: list[ToolCallSpec] | None = Field(
        default=None, description="The calls an assistant message made."
    )
    tool_call_id: str | None = Field(default=None, description="The call a `tool` message answers.")

    @model_validator(mode="after")
    def _role_fields(self) -> ChatMessage:
        """The fields OpenAI requires or allows for each role."""
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content (an assistant one: content or tool_calls)")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    def as_engine(self) -> dict[str, Any]:
        """The message dict the engine renders: role and content, with tool calls when there are."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        message: dict[str, Any] = {"role": self.role, "content": content or ""}
        if self.tool_calls:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class FunctionSpec(_Body):
    name: FunctionName
    description: str | None = None
    parameters: ParametersSchema = None
    strict: bool | None = Field(default=None, description="Accepted; forced calls always follow the schema.")


class ToolSpec(_Body):
    type: Literal["function"] = Field(description="Only function tools are supported.")
    function: FunctionSpec


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Body):
    include_usage: bool = Field(default=False, description="Send a last chunk carrying token usage.")


class JsonSchemaSpec(_Body):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormatText(_Body):
    type: Literal["text"]


class ResponseFormatJsonObject(_Body):
    type: Literal["json_object"]


class ResponseFormatJsonSchema(_Body):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormatSpec = Annotated[
    ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema, Field(discriminator="type")
]


def _bounded(limit: limits.Limit) -> Any:
    """A field type checked by the engine's own `limit` (same bounds, same message), shown in openapi.json."""

    def check(value: float) -> float:
        problem = limit.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    kind = int if limit.integer else float
    schema = Field(json_schema_extra=dict(limit.json_schema()), description=limit.description)
    return Annotated[kind, AfterValidator(check), schema]


Temperature = _bounded(limits.TEMPERATURE)
TopP = _bounded(limits.TOP_P)
TopK = _bounded(limits.TOP_K)
MaxTokens = _bounded(limits.MAX_TOKENS)
Choices = _bounded(limits.N)
Ttl = Annotated[int, Field(ge=0, description="Idle seconds before the model unloads (0: never).")]
# The Foundry extras an inference request may carry (chat, completions and responses alike).
RequestTtl = Annotated[Ttl | None, Field(description="Foundry extra: idle TTL of the model, in seconds.")]
RequestEp = Annotated[
    str | None,
    Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Foundry extra: execution provider (cpu, cuda, dml...).",
    ),
]


class _Sampling(_Body):
    model: str = Field(
        min_length=1, description="A model alias (`phi-3.5-mini`) or full id (`name:version`)."
    )
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    seed: int | None = Field(default=None, description="Makes sampling repeatable.")
    random_seed: int | None = Field(default=None, description="Foundry Local's spelling of `seed`.")
    stop: str | list[str] | None = Field(
        default=None, description=f"Up to {limits.MAX_STOPS} strings that end the answer."
    )
    n: Choices = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(
        default=None, ge=-2.0, le=2.0, description="Accepted, not applied."
    )
    frequency_penalty: float | None = Field(
        default=None, ge=-2.0, le=2.0, description="Accepted, not applied."
    )
    user: str | None = None
    ttl: RequestTtl = None
    ep: RequestEp = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        problem = limits.stop_count_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        items = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in items if s)

    def effective_seed(self) -> int | None:
        return self.seed if self.seed is not None else self.random_seed

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def check_tool_choice(names: list[str], tool_choice: object, chosen: str | None) -> None:
    """Refuse declared functions that repeat, a named choice (`chosen`) that tools does not declare, and
    `required` without tools: the chat and responses routes refuse the same things the same way."""
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"tools declares the function '{duplicated[0]}' more than once")
    if chosen is not None and chosen not in names:
        raise ValueError(
            f"tool_choice names the function '{chosen}', which tools does not declare "
            f"(declared: {', '.join(names) or 'none'})"
        )
    if tool_choice == "required" and not names:
        raise ValueError("tool_choice 'required' needs at least one tool in tools")


class ChatCompletionRequest(_Sampling):
    """`POST v1/chat/completions`."""

    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far, oldest first.")
    max_completion_tokens: MaxTokens | None = Field(default=None, description="Newer name of `max_tokens`.")
    response_format: ResponseFormatSpec | None = None
    tools: list[ToolSpec] | None = Field(default=None, description="Functions the model may call.")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        default=None,
        description="`auto` (the default with tools), `none`, `required`, or one named function.",
    )
    parallel_tool_calls: bool | None = Field(default=None, description="Allow several calls in one answer.")
    logit_bias: dict[str, float] | None = None
    chat_template_kwargs: dict[str, Any] | None = Field(
        default=None,
        description='vLLM extra: `{"enable_thinking": false}` turns a reasoning model\'s thinking off '
        "where its chat template can; other keys are ignored.",
    )
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = Field(
        default=None,
        description="`none` turns a reasoning model's thinking off (as `enable_thinking: false`); the "
        "other levels are accepted and leave the thinking on.",
    )

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> ChatCompletionRequest:
        chosen = self.tool_choice.function.name if isinstance(self.tool_choice, NamedToolChoice) else None
        check_tool_choice([tool.function.name for tool in self.tools or ()], self.tool_choice, chosen)
        if self.logit_bias:
            raise ValueError("logit_bias is not supported; send the request without it")
        return self

    def token_budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def thinking(self) -> bool | None:
        """A reasoning model's thinking on (True), off (False) or as its template does (None)."""
        switch = (self.chat_template_kwargs or {}).get("enable_thinking")
        if isinstance(switch, bool):
            return switch
        return False if self.reasoning_effort == "none" else None

    def engine_messages(self) -> list[dict[str, Any]]:
        return [m.as_engine() for m in self.messages]

    def engine_tools(self) -> tuple[dict[str, Any], ...]:
        return tuple(tool.model_dump(exclude_none=True) for tool in self.tools or ())

    def engine_tool_choice(self) -> str | dict[str, Any] | None:
        choice = self.tool_choice
        return choice.model_dump() if isinstance(choice, NamedToolChoice) else choice


class CompletionRequest(_Sampling):
    """`POST v1/completions` (legacy text completion)."""

    prompt: str | list[str] = Field(description="The text to continue (a list must hold exactly one string).")
    echo: bool = False
    suffix: str | None = Field(
        default=None,
        description=(
            "Text that comes after the completion: the model fills in the middle (models whose tokenizer "
            "has fill-in-the-middle tokens, capability `fim`; others answer 400 `fim_unsupported`)."
        ),
    )

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("send exactly one prompt per request")
        return value

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> CompletionRequest:
        if self.echo:
            raise ValueError("echo is not supported")
        return self

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def token_budget(self) -> int | None:
        return self.max_tokens


class TokenCountRequest(_Body):
    """`POST v1/chat/completions/tokenizer/encode/count`: a chat request whose prompt is counted."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)

    def engine_messages(self) -> list[dict[str, Any]]:
        return [m.as_engine() for m in self.messages]


MAX_EMBEDDING_INPUTS = 2048  # OpenAI's own limit on one request's inputs


class EmbeddingRequest(_Body):
    """`POST v1/embeddings`, as OpenAI's: one text, texts, one token array or token arrays."""

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text, a list of texts, a token array or a list of token arrays (the model's ids)."
    )
    dimensions: int | None = Field(
        default=None, ge=1, description="Shorten each vector to its first N values, renormalized."
    )
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="`base64`: each vector as little-endian float32 bytes."
    )
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        if not items:
            raise ValueError("must not be empty")
        if len(items) > MAX_EMBEDDING_INPUTS and not isinstance(items[0], int):
            raise ValueError(f"must hold at most {MAX_EMBEDDING_INPUTS} inputs")
        if any(item == "" or item == [] for item in items):
            raise ValueError("must not hold an empty string or an empty token array")
        return value

    def inputs(self) -> list[str | list[int]]:
        """The inputs as a list: a lone string or token array becomes a list of one."""
        value = self.input
        if isinstance(value, str) or (value and isinstance(value[0], int)):
            return [value]  # type: ignore[list-item]
        return list(value)  # type: ignore[arg-type]


class FoundryModelRef(_Body):
    """Foundry Local's `WorkspaceInferenceModel`; only the name is needed here."""

    Name: str = Field(min_length=1, description="The model id (`name:version`) or alias.")
    Uri: str | None = None
    ProviderType: str | None = None
    Publisher: str | None = None


class FoundryDownloadRequest(_Body):
    """`POST openai/download`, in Foundry Local's shape (`model` may also be a plain string)."""

    model: str | FoundryModelRef
    token: str | None = None
    ignorePipeReport: bool | None = None

    def model_name(self) -> str:
        name = self.model if isinstance(self.model, str) else self.model.Name
        if not name.strip():
            raise InvalidRequest("`model` must name a model", param="model")
        return name.strip()


class DownloadJobRequest(_Body):
    """`POST downloads`: start a background download."""

    model: str = Field(min_length=1, description="A model alias or full id.")


def parse(model: type[BaseModel], body: Any) -> Any:
    """Validate `body` against `model`, turning pydantic's report into one actionable InvalidRequest."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _as_invalid_request(exc) from None


def _as_invalid_request(exc: ValidationError) -> InvalidRequest:
    first = exc.errors(include_url=False)[0]
    loc: list[str] = []
    for part in first.get("loc", ()):
        # pydantic puts union members into `loc` ("str", "list[TextPart]", a discriminator tag).
        if _is_type_name(part) or (loc and loc[-1] == str(part)):
            continue
        loc.append(str(part))
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if first.get("type") == "missing":
        text = f"Missing required field '{param}'."
    elif param:
        text = limits.invalid_value(param, message)
    else:
        text = f"Invalid request: {message}."
    extra = len(exc.errors()) - 1
    if extra > 0:
        text += f" ({extra} more problem{'s' if extra > 1 else ''} in the body)"
    return InvalidRequest(text, param=param)


def _is_type_name(part: Any) -> bool:
    return isinstance(part, str) and (part in {"str", "int", "float", "bool", "none"} or "[" in part)
