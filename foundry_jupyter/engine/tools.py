"""Tool (function) calling: tools into the prompt, guidance for forced calls, calls out of the text.

Tools are rendered in the Hermes / Qwen style that most small instruct models were tuned on: a system
block listing the functions inside `<tools>` and asking for `<tool_call>{"name", "arguments"}</tool_call>`.
It is plain text, so it works whatever chat template the model carries (og 0.18's `apply_chat_template`
takes a `tools` argument, but many templates ignore it and few render `tool_calls` in the history).

- "none": the tools are not shown and nothing is parsed.
- "auto": the model chooses; `<tool_call>` blocks are cut out of the streamed text and parsed.
- "required" / a named function: og guidance (a JSON schema) makes the whole answer one call of a
  declared function whose arguments match its parameter schema.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from foundry_jupyter.engine.types import Delta, GenerationParams, Message, ToolCall
from foundry_jupyter.errors import InvalidRequest

START, END = "<tool_call>", "</tool_call>"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# No free whitespace: a small model under a permissive grammar can spend its budget on blanks.
_COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

_SYSTEM = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


@dataclass(frozen=True)
class ToolPlan:
    """What one request asks: its functions (name -> parameter schema) and how to use them."""

    functions: dict[str, dict[str, Any]]
    specs: tuple[dict[str, Any], ...]
    mode: str  # "none" | "auto" | "required"
    forced: str | None = None  # the one function a named tool_choice asks for
    parallel: bool = True

    @property
    def active(self) -> bool:
        return self.mode != "none" and bool(self.functions)


def plan(params: GenerationParams) -> ToolPlan:
    """Validate `params.tools` and `params.tool_choice` (InvalidRequest on bad input)."""
    functions: dict[str, dict[str, Any]] = {}
    specs: list[dict[str, Any]] = []
    tools = params.tools or ()
    if not isinstance(tools, list | tuple):
        raise InvalidRequest("tools must be a list of function tools.", param="tools")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise InvalidRequest(
                f'tools[{i}] must be {{"type": "function", "function": {{"name": ...}}}}.', param="tools"
            )
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidRequest(
                f"tools[{i}].function.name must be 1-64 letters, digits, '_' or '-'.", param="tools"
            )
        if name in functions:
            raise InvalidRequest(f"tools declares the function '{name}' twice.", param="tools")
        schema = fn.get("parameters")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        if not isinstance(schema, dict):
            raise InvalidRequest(
                f"tools[{i}].function.parameters must be a JSON schema object.", param="tools"
            )
        functions[name] = schema
        spec = {"name": name, "description": fn.get("description") or "", "parameters": schema}
        specs.append({"type": "function", "function": spec})
    choice = params.tool_choice
    forced = None
    if choice is None:
        mode = "auto"
    elif isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequest(
                f"tool_choice must be none, auto, required or a named function, not {choice!r}.",
                param="tool_choice",
            )
        mode = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        forced = (choice.get("function") or {}).get("name")
        if forced not in functions:
            raise InvalidRequest(
                f"tool_choice names the function {forced!r}, which tools does not declare.",
                param="tool_choice",
            )
        mode = "required"
    else:
        raise InvalidRequest(
            'tool_choice must be a string or {"type": "function", "function": {"name": ...}}.',
            param="tool_choice",
        )
    if mode == "required" and not functions:
        raise InvalidRequest(
            "tool_choice requires a tool call, but no tools were given.", param="tool_choice"
        )
    return ToolPlan(functions, tuple(specs), mode, forced, bool(params.parallel_tool_calls))


# ---- prompt ---------------------------------------------------------------------------------
def render_messages(messages: list[Message], tool_plan: ToolPlan) -> list[Message]:
    """The messages with the tools in the system message and tool calls / results as plain text."""
    if not isinstance(messages, list):
        return messages  # the model's own validation reports it
    out: list[Message] = []
    for message in messages:
        if not isinstance(message, dict):
            out.append(message)
            continue
        role = message.get("role")
        if role == "tool":
            result = f"<tool_response>\n{_text(message.get('content'))}\n</tool_response>"
            if out and out[-1].get("role") == "user" and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + result  # consecutive results share one turn
            else:
                out.append({"role": "user", "content": result, "_tool_results": True})
        elif role == "assistant" and message.get("tool_calls"):
            parts = [_text(message.get("content"))] if message.get("content") else []
            parts += [f"{START}\n{_call_json(call)}\n{END}" for call in message["tool_calls"]]
            out.append({"role": "assistant", "content": "\n".join(parts)})
        else:
            out.append(message)
    for message in out:
        if isinstance(message, dict):
            message.pop("_tool_results", None)
    if tool_plan.active:
        block = _SYSTEM.format(tools="\n".join(json.dumps(s, ensure_ascii=False) for s in tool_plan.specs))
        if tool_plan.forced:
            block += f"\n\nCall the function {tool_plan.forced} now."
        elif tool_plan.mode == "required":
            block += "\n\nAnswer with a function call."
        first = out[0] if out else None
        if isinstance(first, dict) and first.get("role") in ("system", "developer"):
            out[0] = {**first, "content": f"{_text(first.get('content'))}\n\n{block}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _call_json(call: Any) -> str:
    fn = call.get("function", {}) if isinstance(call, dict) else {}
    if not isinstance(fn, dict):
        raise InvalidRequest("An assistant tool_calls entry needs a function object.", param="messages")
    arguments = fn.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # otherwise shown to the model as the text it was
            arguments = json.loads(arguments) if arguments.strip() else {}
    return json.dumps({"name": fn.get("name"), "arguments": arguments}, ensure_ascii=False)


# ---- guidance ---------------------------------------------------------------------------------
def guidance(tool_plan: ToolPlan) -> tuple[str, str] | None:
    """og guidance making the answer one JSON call `{"name", "arguments"}`, for required / named."""
    if not tool_plan.active or tool_plan.mode != "required":
        return None
    names = [tool_plan.forced] if tool_plan.forced else list(tool_plan.functions)
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": tool_plan.functions[name]},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name in names
    ]
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    schema = {**schema, "x-guidance": _COMPACT_JSON}
    return "json_schema", json.dumps(schema)


# ---- parsing ----------------------------------------------------------------------------------
def parse_call(text: str, functions: dict[str, dict[str, Any]]) -> ToolCall | None:
    """One `{"name", "arguments"}` object as a ToolCall, or None if it is not a call of a declared tool."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("name") not in functions:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(
        id=f"call_{secrets.token_hex(12)}",
        name=data["name"],
        arguments=json.dumps(arguments, ensure_ascii=False),
    )


class _Scanner:
    """Splits streamed text into content and `<tool_call>` blocks, holding back a partial tag."""

    def __init__(self) -> None:
        self._pending = ""
        self._inside = False
        self.blocks: list[str] = []
        self.unterminated = False  # the last block had no end tag

    def feed(self, text: str) -> str:
        self._pending += text
        shown: list[str] = []
        while True:
            if self._inside:
                end = self._pending.find(END)
                if end < 0:
                    return "".join(shown)
                self.blocks.append(self._pending[:end])
                self._pending = self._pending[end + len(END) :]
                self._inside = False
            else:
                start = self._pending.find(START)
                if start < 0:
                    keep = _partial_tail(self._pending, START)
                    cut = len(self._pending) - keep
                    shown.append(self._pending[:cut])
                    self._pending = self._pending[cut:]
                    return "".join(shown)
                shown.append(self._pending[:start])
                self._pending = self._pending[start + len(START) :]
                self._inside = True

    def finish(self) -> str:
        """What is left: an unterminated block counts as a block (the model may stop after it)."""
        rest, self._pending = self._pending, ""
        if self._inside:
            self.blocks.append(rest)
            self._inside = False
            self.unterminated = True
            return ""
        return rest


def _partial_tail(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag` (it may continue in the next piece)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def with_tool_calls(deltas: Iterator[Delta], tool_plan: ToolPlan) -> Iterator[Delta]:
    """The deltas with tool calls taken out of the text and put on the last delta."""
    if not tool_plan.active:
        yield from deltas
        return
    forced = tool_plan.mode == "required"
    scanner = _Scanner()
    raw: list[str] = []
    try:
        for delta in deltas:
            if delta.finish_reason is None:
                if forced:
                    raw.append(delta.text)  # the whole answer is one call: nothing to stream
                else:
                    piece = scanner.feed(delta.text)
                    if piece or delta.reasoning:
                        yield Delta(text=piece, reasoning=delta.reasoning)
                continue
            calls: list[ToolCall] = []
            leftover = ""
            if forced:
                text = "".join(raw) + delta.text
                call = parse_call(text.strip(), tool_plan.functions)
                if call is not None:
                    calls.append(call)
                else:
                    leftover = text  # cut short (finish "length"): say what was made
            else:
                leftover = scanner.feed(delta.text) + scanner.finish()
                for i, block in enumerate(scanner.blocks):
                    call = parse_call(block.strip(), tool_plan.functions)
                    if call is None:  # not a call of a declared tool: it stays text, as written
                        cut = scanner.unterminated and i == len(scanner.blocks) - 1
                        leftover += START + block + ("" if cut else END)
                    else:
                        calls.append(call)
            if not tool_plan.parallel:
                calls = calls[:1]
            finish = delta.finish_reason
            if calls and finish in ("stop", "length"):
                finish = "tool_calls"
            yield Delta(
                text=leftover,
                finish_reason=finish,
                usage=delta.usage,
                tool_calls=tuple(calls),
                reasoning=delta.reasoning,
            )
            return
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()


NO_TOOLS = ToolPlan(functions={}, specs=(), mode="none")
