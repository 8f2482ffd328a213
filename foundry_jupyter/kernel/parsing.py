"""Argument parsing for `%foundry` and `%%foundry`: shlex first, then argparse, never a SystemExit.

Each subcommand parses into an `argparse.Namespace` whose `command` names the handler; the chat options
of a cell parse into a `ChatOptions`. A mistake raises `UsageError` with one line and the usage.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from IPython.core.error import UsageError

COMMANDS: dict[str, str] = {
    "run": "resolve, download, load and activate a model; answer PROMPT if given, else open a chat widget",
    "explain": "explain the last error, with its traceback and the cell that raised it",
    "list": "the catalog: every model this machine can run (DataFrame)",
    "cache": "the models in the local cache (DataFrame)",
    "ps": "the models loaded now (DataFrame)",
    "status": "which backend is in use, the active model and the conversation",
    "hardware": "CPU, memory, GPUs and execution providers",
    "download": "download a model into the cache",
    "import": "convert a GGUF file (llama, mistral, qwen2) into the cache, without torch",
    "load": "load a model into memory",
    "unload": "unload a model",
    "remove": "remove a model from the cache",
    "use": "make a model the notebook's active model",
    "backend": "show or choose where models run: kernel, server or auto",
    "history": "the conversation so far",
    "reset": "forget the conversation",
    "picker": "the model picker widget",
    "embed": "embedding vectors of the quoted TEXTs (DataFrame: text, embedding)",
    "help": "this help",
}


class _ParseError(Exception):
    pass


class _HelpShown(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise _ParseError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _ParseError(message or "invalid arguments")

    def print_help(self, file: Any = None) -> None:
        raise _HelpShown(self.format_help())


@dataclass(frozen=True)
class ChatOptions:
    """What a `%%foundry` cell (or `%foundry run`) asks of a generation."""

    model: str | None = None
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    new: bool = False
    thinking: bool | None = None  # False: a reasoning model answers without thinking, where it can
    format: str = "markdown"  # "code": the answer's code also goes into a new cell below


FORMATS = ("markdown", "code")
Expand = Callable[[str], str]


def _same(text: str) -> str:
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _temperature(text: str) -> float:
    value = _float(text)
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2, got {value}")
    return value


def _probability(text: str) -> float:
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", "-s", help="system message (starts the conversation's instructions)")
    parser.add_argument("--max-tokens", "-n", type=_positive_int, help="most tokens to generate")
    parser.add_argument("--temperature", "-t", type=_temperature, help="sampling temperature, 0 = greedy")
    parser.add_argument("--top-p", type=_probability, help="nucleus sampling probability")
    parser.add_argument("--seed", type=_int, help="random seed, for repeatable sampling")
    parser.add_argument(
        "--no-think",
        dest="thinking",
        action="store_false",
        default=None,
        help="a reasoning model answers without thinking (where its chat template can)",
    )


def _add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        "-f",
        choices=FORMATS,
        default="markdown",
        help="code: put the answer's code in a new cell",
    )


def cell_parser() -> _Parser:
    parser = _Parser(prog="%%foundry", description="Chat with a local model; the cell is your message.")
    parser.add_argument("model", nargs="?", help="alias or id (default: the active model)")
    _add_generation_options(parser)
    parser.add_argument("--json-schema", "-j", help="JSON schema of the answer: JSON or a variable")
    parser.add_argument("--new", action="store_true", help="start a new conversation")
    _add_format_option(parser)
    return parser


def _line_parser() -> tuple[_Parser, dict[str, _Parser]]:
    parser = _Parser(prog="%foundry", description="Local models in this notebook.", add_help=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subs: dict[str, _Parser] = {}
    for name, help_text in COMMANDS.items():
        subs[name] = sub.add_parser(name, help=help_text, description=help_text)
    subs["run"].usage = "%(prog)s [options] MODEL [PROMPT ...]"
    _add_generation_options(subs["run"])
    _add_format_option(subs["run"])
    subs["run"].add_argument("model", help="alias or id; the rest of the line is the prompt")
    _add_generation_options(subs["explain"])
    subs["explain"].add_argument("model", nargs="?", help="alias or id (default: the active model)")
    subs["explain"].add_argument("--new", action="store_true", help="start a new conversation")
    subs["list"].add_argument("filter", nargs="?", help="only entries whose alias or id contains this")
    for name in ("download", "load", "unload", "remove", "use"):
        subs[name].add_argument("model", help="alias or id")
    subs["download"].add_argument("--force", action="store_true", help="download again even if cached")
    subs["import"].add_argument("path", help="the .gguf file")
    subs["import"].add_argument("--alias", help="the name to run it by (default: from the file name)")
    subs["import"].add_argument("--precision", help="int4 (default), int4-exact, int4-kv8, int4-fast or fp32")
    subs["load"].add_argument("--ep", help="execution provider (cpu, cuda, dml, ...)")
    subs["load"].add_argument("--ttl", type=_positive_int, help="seconds to stay loaded (server backend)")
    subs["backend"].add_argument("which", nargs="?", choices=("kernel", "server", "auto"))
    subs["history"].add_argument("--json", action="store_true", help="the raw messages as JSON")
    subs["embed"].add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed (quote each)")
    subs["embed"].add_argument("--model", "-m", help="embedding model (default: all-minilm-l6-v2)")
    subs["embed"].add_argument("--dimensions", "-d", type=_positive_int, help="shorten the vectors to N")
    subs["help"].add_argument("topic", nargs="?", help="a command")
    subs["hardware"].add_argument("--widget", action="store_true", help="the hardware panel widget")
    return parser, subs


def usage() -> str:
    names = "|".join(COMMANDS)
    return f"usage: %foundry {{{names}}} ...   or   %%foundry [model] [--new] [--system S] [--max-tokens N]"


def help_text(topic: str | None = None) -> str:
    _, subs = _line_parser()
    if topic:
        if topic in subs:
            return subs[topic].format_help()
        if topic in ("%%foundry", "cell"):
            return cell_parser().format_help()
        raise UsageError(f"unknown command {topic!r}\n{usage()}")
    width = max(len(n) for n in COMMANDS)
    lines = ["%foundry COMMAND [ARGS]: local models in this notebook", ""]
    lines += [f"  {name.ljust(width)}  {text}" for name, text in COMMANDS.items()]
    lines += [
        "",
        "%%foundry [model] [--new] [--system S] [--max-tokens N] [--temperature T] [--seed S] "
        "[--json-schema J] [--format code] [--no-think]",
        "  the cell is your message; the answer streams in and the conversation continues in the next cell.",
        "  A prompt may name notebook state: {In[3]}, {Out[3]}, {Err} (the last error and its traceback),",
        "  {Err[5]}, {name} (a variable; a DataFrame as shape, columns and head); {{ and }} are braces.",
        "  --format code (-f code) puts the answer's code into a new cell below, not run.",
        "  A reasoning model's thinking shows folded above its answer; --no-think turns it off.",
        "",
        "%foundry help COMMAND shows a command's options.",
    ]
    return "\n".join(lines)


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as err:  # an unbalanced quote
        raise UsageError(f"cannot parse arguments: {err}\n{usage()}") from None


def parse_line(line: str, expand: Expand = _same) -> argparse.Namespace:
    """Parse a `%foundry` line into a namespace with `command` set; `help` when the line is empty.

    `expand` rewrites the arguments before they are split (IPython's `{var}` and `$var`), all but the
    prompt of `run`, whose braces name notebook state (see `context`).
    """
    parser, subs = _line_parser()
    if line.split(None, 1)[:1] == ["run"]:
        return _parse_run(line, subs["run"], expand)
    tokens = _split(expand(line))
    if not tokens:
        return argparse.Namespace(command="help", topic=None)
    if tokens[0] in ("-h", "--help"):
        return argparse.Namespace(command="help", topic=None)
    if tokens[0] not in subs:
        raise UsageError(f"unknown command {tokens[0]!r}\n{usage()}")
    try:
        return parser.parse_args(tokens)
    except _HelpShown:
        return argparse.Namespace(command="help", topic=tokens[0])
    except _ParseError as err:
        raise UsageError(f"{err}\n{subs[tokens[0]].format_usage().strip()}") from None


def _parse_run(line: str, parser: _Parser, expand: Expand = _same) -> argparse.Namespace:
    """`run` takes the prompt as the raw rest of the line, so apostrophes in it need no quoting.

    Options may come before or right after the model; the first other word starts the prompt.
    """
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    head: list[str] = []
    takes_value = {
        "--system",
        "-s",
        "--max-tokens",
        "-n",
        "--temperature",
        "-t",
        "--top-p",
        "--seed",
        "--format",
        "-f",
    }
    flags = {"--no-think"}
    rest = ""
    rest_start = len(line)
    seen_model = expecting_value = False
    lexer.get_token()  # "run"
    while True:
        start = lexer.instream.tell()
        try:
            token = lexer.get_token()
        except ValueError as err:  # an unbalanced quote: fine inside the prompt, not before it
            if seen_model and not expecting_value:
                rest, rest_start = line[start:].strip(), start
                break
            raise UsageError(f"cannot parse arguments: {err}\n{parser.format_usage().strip()}") from None
        if token is None or token == lexer.eof:
            break
        if expecting_value:
            expecting_value = False
        elif token in ("-h", "--help"):
            return argparse.Namespace(command="help", topic="run")
        elif token in takes_value:
            expecting_value = True
        elif token in flags:
            pass
        elif seen_model:  # the first word after the model that is not an option
            rest, rest_start = line[start:].strip(), start
            break
        elif not token.startswith("-"):
            seen_model = True
        head.append(token)
    if expand is not _same:
        expanded = _split(expand(line[:rest_start]))
        head = expanded[1:] if expanded[:1] == ["run"] else head
    try:
        args = parser.parse_args(head)
    except _ParseError as err:
        raise UsageError(f"{err}\n{parser.format_usage().strip()}") from None
    args.command = "run"
    args.prompt = _unquote(rest)
    return args


def _unquote(text: str) -> str:
    """A prompt written wholly in quotes loses them; anything else stays as typed."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            parts = shlex.split(text)
        except ValueError:
            return text
        if len(parts) == 1:
            return parts[0]
    return text


def parse_cell(line: str, user_ns: dict[str, Any] | None = None, expand: Expand = _same) -> ChatOptions:
    """Parse the `%%foundry` line; `--json-schema` takes JSON text or the name of a dict variable."""
    parser = cell_parser()
    try:
        args = parser.parse_args(_split(expand(line)))
    except _HelpShown as shown:
        raise UsageError(shown.text) from None
    except _ParseError as err:
        raise UsageError(f"{err}\n{parser.format_usage().strip()}") from None
    schema = _schema(args.json_schema, user_ns or {}) if args.json_schema else None
    return chat_options(args, model=args.model, json_schema=schema, new=args.new, format=args.format)


def chat_options(args: argparse.Namespace, **extra: Any) -> ChatOptions:
    """The generation options every chatting command shares, plus its own."""
    return ChatOptions(
        system=args.system,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        thinking=getattr(args, "thinking", None),
        **extra,
    )


def _schema(text: str, user_ns: dict[str, Any]) -> dict[str, Any]:
    if text.isidentifier() and text in user_ns:
        value = user_ns[text]
        if hasattr(value, "model_json_schema"):  # a pydantic model class
            value = value.model_json_schema()
        if not isinstance(value, dict):
            raise UsageError(f"--json-schema: {text} is a {type(value).__name__}, not a dict")
        return value
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"--json-schema: not JSON and not a variable name ({err.msg})") from None
    if not isinstance(value, dict):
        raise UsageError("--json-schema: a schema is a JSON object")
    return value
