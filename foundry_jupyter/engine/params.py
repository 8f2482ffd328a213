"""Generation parameters: their limits, checked here for every caller, and what og is asked for.

`LIMITS` is the one definition of what a request may ask: the engine checks `GenerationParams`
against it, and the REST schemas (`service.schemas`) take their bounds, their OpenAPI `minimum` /
`maximum` and their refusal messages from it, so a kernel-resident model and the REST API refuse the
same values with the same words.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from foundry_jupyter.config import DEFAULT_MAX_TOKENS
from foundry_jupyter.engine.types import GenerationParams
from foundry_jupyter.errors import ContextLengthExceeded, InvalidRequest

MAX_STOPS = 4
# No tokenizer turns more than this many characters of ordinary text into one token, so a prompt with
# more characters than that many times the context cannot fit: it is refused before anything tokenizes
# it (tokenizing tens of megabytes takes seconds).
MAX_CHARS_PER_TOKEN = 64
# Compact JSON: a small model under a grammar that allows free whitespace can spend its whole budget
# on it. The caller's own "x-guidance" settings win.
_COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def invalid_value(param: str, problem: str) -> str:
    """The message of every refused field value, engine or REST: "Invalid value for 'x': problem."."""
    return f"Invalid value for '{param}': {problem}."


@dataclass(frozen=True)
class Limit:
    """The range of one numeric parameter. Bounds are inclusive except `above` (a strict minimum)."""

    name: str
    integer: bool = False
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    refusal: str | None = None  # said for any value out of range, instead of naming the bound
    description: str = ""

    def problem(self, value: object) -> str | None:
        """Why `value` is refused, or None when it is allowed. NaN fails every comparison: refused."""
        kinds = int if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return "must be an integer" if self.integer else "must be a number"
        if self.minimum is not None and not value >= self.minimum:
            return self.refusal or f"must be greater than or equal to {_number(self.minimum)}"
        if self.above is not None and not value > self.above:
            return self.refusal or f"must be greater than {_number(self.above)}"
        if self.maximum is not None and not value <= self.maximum:
            return self.refusal or f"must be less than or equal to {_number(self.maximum)}"
        return None

    def check(self, value: object) -> None:
        """Raise `InvalidRequest` when `value` (None: left out, always allowed) is out of range."""
        problem = None if value is None else self.problem(value)
        if problem is not None:
            raise InvalidRequest(invalid_value(self.name, problem), param=self.name)

    def json_schema(self) -> dict[str, float]:
        """The bounds as JSON-schema keywords, for openapi.json."""
        keywords = {"minimum": self.minimum, "exclusiveMinimum": self.above, "maximum": self.maximum}
        return {key: value for key, value in keywords.items() if value is not None}


MAX_TOKENS = Limit("max_tokens", integer=True, minimum=1, description="Tokens to generate at most.")
TEMPERATURE = Limit("temperature", minimum=0.0, maximum=2.0, description="0 is greedy; up to 2.")
TOP_P = Limit(
    "top_p", above=0.0, maximum=1.0, description="Sample from the likeliest tokens that add up to p."
)
# top_k is not an OpenAI field. Foundry Local takes it, and vLLM reads 0 (or -1) as "no top-k cut".
# Here 0 and below are refused at every layer: leaving top_k out keeps the model's own setting, and a
# client sending 0 most likely means something else (greedy is temperature 0).
TOP_K = Limit(
    "top_k",
    integer=True,
    minimum=1,
    description="Foundry extra: sample among the k likeliest tokens (leave it out for the model's own).",
)
# Only one choice per request: the REST API refuses other values with this message.
N = Limit(
    "n",
    integer=True,
    minimum=1,
    maximum=1,
    refusal="only n=1 is supported: send several requests to get several answers",
    description="Only 1 is supported.",
)
LIMITS = {limit.name: limit for limit in (MAX_TOKENS, TEMPERATURE, TOP_P, TOP_K, N)}


def stop_count_problem(stop: object) -> str | None:
    """Why a list of stop strings is refused for its length, or None."""
    if isinstance(stop, (list, tuple)) and len(stop) > MAX_STOPS:
        return f"at most {MAX_STOPS} stop sequences are allowed"
    return None


def validate(params: GenerationParams) -> None:
    """Raise `InvalidRequest` for the first value of `params` out of its range."""
    for limit in (MAX_TOKENS, TEMPERATURE, TOP_P, TOP_K):
        limit.check(getattr(params, limit.name))
    stops(params)


def stops(params: GenerationParams) -> tuple[str, ...]:
    stop = params.stop
    found = (stop,) if isinstance(stop, str) else tuple(stop or ())
    problem = stop_count_problem(found)
    if problem is None and not all(isinstance(s, str) and s for s in found):
        problem = "stop strings must be non-empty strings"
    if problem is not None:
        raise InvalidRequest(invalid_value("stop", problem), param="stop")
    return found


@dataclass(frozen=True)
class Sampling:
    """What og's search options are set to for one request (both og APIs)."""

    do_sample: bool
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None


def sampling(params: GenerationParams, default_do_sample: bool, default_temperature: Any) -> Sampling:
    """`params`' sampling, the model folder's defaults where it leaves temperature out."""
    t = params.temperature
    if t is None:
        do_sample, t = default_do_sample, default_temperature
    else:
        do_sample = t > 0
    return Sampling(
        do_sample=do_sample,
        temperature=float(t) if do_sample and t is not None else None,
        top_p=params.top_p,
        top_k=params.top_k,
        seed=params.seed,
    )


@dataclass(frozen=True)
class Generation:
    """One checked request, as either og API runs it."""

    ids: list[int]  # the prompt's token ids
    max_new: int
    sampling: Sampling
    guidance: tuple[str, str] | None
    stops: tuple[str, ...]
    cancel: threading.Event | None

    @property
    def needed(self) -> int:
        """Tokens of context it may fill: prompt and answer."""
        return len(self.ids) + self.max_new


def prepare(
    ids: list[int],
    params: GenerationParams,
    *,
    context_length: int,
    default_do_sample: bool,
    default_temperature: Any,
    forced_guidance: tuple[str, str] | None = None,
    cancel: threading.Event | None = None,
) -> Generation:
    """Check `params` (InvalidRequest, ContextLengthExceeded) and settle what og is asked for."""
    validate(params)
    return Generation(
        ids=ids,
        max_new=max_new_tokens(len(ids), context_length, params),
        sampling=sampling(params, default_do_sample, default_temperature),
        guidance=forced_guidance or guidance(params),
        stops=stops(params),
        cancel=cancel,
    )


def check_prompt_chars(chars: int, context_length: int | None, param: str = "messages") -> None:
    """Raise `ContextLengthExceeded` for a prompt of `chars` characters that cannot fit the context
    whatever its tokens; cheap, so it runs before tokenizing."""
    if context_length and chars > context_length * MAX_CHARS_PER_TOKEN:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context_length} tokens, but the prompt has "
            f"{chars} characters, far more than that many tokens can hold. Shorten the messages.",
            param=param,
        )


def max_new_tokens(prompt_len: int, context_length: int, params: GenerationParams) -> int:
    """Tokens to generate: what was asked (or `DEFAULT_MAX_TOKENS`), within the context left."""
    room = context_length - prompt_len
    if room < 1:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context_length} tokens, but the prompt has "
            f"{prompt_len} tokens. Shorten the messages.",
            param="messages",
        )
    wanted = params.max_tokens if params.max_tokens is not None else DEFAULT_MAX_TOKENS
    return min(wanted, room)


def guidance(params: GenerationParams) -> tuple[str, str] | None:
    """og's guidance (type, data) for `params.response_format`, or None for free text."""
    fmt = params.response_format
    if fmt is None or fmt.kind == "text":
        return None
    if fmt.kind in ("json_object", "json_schema"):
        if fmt.kind == "json_schema" and not isinstance(fmt.schema, dict):
            raise InvalidRequest(
                "response_format json_schema needs a schema object.", param="response_format"
            )
        schema = (
            dict(fmt.schema) if fmt.kind == "json_schema" and fmt.schema is not None else {"type": "object"}
        )
        schema.setdefault("x-guidance", _COMPACT_JSON)
        return "json_schema", json.dumps(schema)
    if fmt.kind in ("regex", "lark"):
        if not fmt.grammar:
            raise InvalidRequest(f"response_format {fmt.kind} needs a grammar.", param="response_format")
        return ("regex" if fmt.kind == "regex" else "lark_grammar"), fmt.grammar
    raise InvalidRequest(f"Unknown response_format type {fmt.kind!r}.", param="response_format")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
