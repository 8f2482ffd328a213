"""Argument parsing: shlex + argparse, ids with ':', raw prompts for `run`, one-line usage errors."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from foundry_jupyter.kernel.parsing import parse_cell, parse_line


@pytest.mark.parametrize(
    ("line", "model", "max_tokens", "system", "prompt"),
    [
        ("run tiny", "tiny", None, None, ""),
        ("run tiny-generic-cpu:1 hello", "tiny-generic-cpu:1", None, None, "hello"),
        ("run tiny -n 3 hello there", "tiny", 3, None, "hello there"),
        ("run -n 3 tiny what's up", "tiny", 3, None, "what's up"),
        ("run tiny what's up -n 3", "tiny", None, None, "what's up -n 3"),
        ('run tiny "quoted prompt"', "tiny", None, None, "quoted prompt"),
        ("run tiny -5 degrees outside", "tiny", None, None, "-5 degrees outside"),
        ('run tiny --system "be brief" it\'s   spaced', "tiny", None, "be brief", "it's   spaced"),
    ],
)
def test_run_line(line: str, model: str, max_tokens: int | None, system: str | None, prompt: str) -> None:
    args = parse_line(line)
    assert (args.command, args.model, args.max_tokens, args.system, args.prompt) == (
        "run",
        model,
        max_tokens,
        system,
        prompt,
    )


def test_ids_with_colons_and_quotes() -> None:
    assert parse_line("load phi-3.5-mini-instruct-generic-cpu:4 --ep cpu").model == (
        "phi-3.5-mini-instruct-generic-cpu:4"
    )
    assert parse_line("remove 'my model:2'").model == "my model:2"
    assert (
        parse_cell("qwen2.5-0.5b-instruct-generic-cpu:3 --new").model == "qwen2.5-0.5b-instruct-generic-cpu:3"
    )


def test_help_forms() -> None:
    assert parse_line("").command == "help"
    assert parse_line("--help").command == "help"
    assert (parse_line("run -h").command, parse_line("run -h").topic) == ("help", "run")
    assert parse_line("cache --help").topic == "cache"


@pytest.mark.parametrize(
    "line", ["run", "run tiny -n", 'run "x', "run --temperature 3 tiny hi", "download", "ps extra"]
)
def test_line_mistakes_are_usage_errors(line: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_line(line)
    first, *rest = str(info.value).splitlines()
    assert first and rest and rest[0].startswith("usage:")


def test_cell_options() -> None:
    options = parse_cell("tiny -n 5 -t 0.5 --top-p 0.9 --seed 3 --system 'Be brief.' --new")
    assert (options.model, options.max_tokens, options.temperature, options.top_p, options.seed) == (
        "tiny",
        5,
        0.5,
        0.9,
        3,
    )
    assert options.system == "Be brief." and options.new
    schema = parse_cell('--json-schema \'{"type": "object"}\'').json_schema
    assert schema == {"type": "object"}


def test_json_schema_from_a_pydantic_model() -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        city: str

    schema = parse_cell("--json-schema Answer", {"Answer": Answer}).json_schema
    assert schema is not None and schema["properties"]["city"]["type"] == "string"
    with pytest.raises(UsageError, match="is a int, not a dict"):
        parse_cell("--json-schema n", {"n": 3})


def test_format_and_explain() -> None:
    assert parse_cell("tiny -f code").format == "code"
    assert parse_cell("tiny").format == "markdown"
    run = parse_line("run tiny --format code write {x}")
    assert (run.format, run.prompt) == ("code", "write {x}")
    assert parse_line("run -f code tiny sort it").format == "code"
    with pytest.raises(UsageError, match="invalid choice"):
        parse_cell("tiny --format html")
    explain = parse_line("explain")
    assert (explain.command, explain.model) == ("explain", None)
    assert parse_line("explain tiny -n 5").max_tokens == 5
    assert parse_line("explain --new").new


def test_expand_rewrites_arguments_but_not_the_run_prompt() -> None:
    def expand(text: str) -> str:
        return text.replace("{which}", "tiny")

    run = parse_line("run {which} -n 2 about {which}", expand)
    assert (run.model, run.max_tokens, run.prompt) == ("tiny", 2, "about {which}")
    assert parse_line("use {which}", expand).model == "tiny"
    assert parse_cell("{which} --new", None, expand).model == "tiny"


@pytest.mark.parametrize(
    ("line", "thinking", "prompt"),
    [
        ("run tiny --no-think why?", False, "why?"),
        ("run --no-think tiny why?", False, "why?"),
        ("run tiny why --no-think", None, "why --no-think"),
    ],
)
def test_no_think_is_an_option_before_the_prompt(line: str, thinking: bool | None, prompt: str) -> None:
    args = parse_line(line)
    assert (args.thinking, args.prompt) == (thinking, prompt)
    assert parse_cell("tiny --no-think").thinking is False and parse_cell("tiny").thinking is None
