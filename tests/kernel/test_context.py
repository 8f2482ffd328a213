"""Prompts that name notebook state, `--format code` and `%foundry explain`, through a real
InteractiveShell with the tiny model, and once through a real ipykernel kernel."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from IPython.core.error import UsageError

from foundry_jupyter.engine.testmodel import TINY_ID
from foundry_jupyter.kernel.context import CODE_INSTRUCTION, ErrorLog, NotebookContext, extract_code
from foundry_jupyter.kernel.magics import FoundryCellError


def _run(shell: Any, code: str) -> Any:
    """Run `code` as the next notebook cell (it gets an In[N] and, if it fails, an error)."""
    return shell.run_cell(code, store_history=True)


def _sent(magics: Any) -> str:
    """The last user message the model received."""
    return next(m["content"] for m in reversed(magics.session.conversation.messages) if m["role"] == "user")


def _ask(shell: Any, magics: Any, cell: str) -> str:
    """Run the magic `cell`, which must succeed; the user message the model received."""
    result = _run(shell, cell)
    assert result.success, result.error_in_exec
    return _sent(magics)


@pytest.fixture
def no_last_error() -> Any:
    """The process's most recent error forgotten (IPython and the shell may reset these meanwhile)."""
    names = ("last_exc", "last_value", "last_type", "last_traceback")
    saved = {name: getattr(sys, name, None) for name in names}
    for name in names:
        setattr(sys, name, None)
    yield
    for name, value in saved.items():
        setattr(sys, name, value)


def test_a_cell_prompt_names_cells_outputs_and_variables(shell: Any, magics: Any) -> None:
    import pandas as pd

    _run(shell, "x = 41")
    _run(shell, "x + 1")
    shell.user_ns["df"] = pd.DataFrame({"city": ["Oslo", "Lima", "Pune"], "temp": [3.5, 19.0, 31.2]})
    shell.user_ns["title"] = "Weather"
    sent = _ask(
        shell,
        magics,
        "%%foundry tiny -n 4\nCell {In[1]} gave {Out[2]}.\n{title}: {df}\nKeep {{braces}} and {x!r}.",
    )
    head, table = sent.split("Weather: ")
    assert head == "Cell x = 41 gave 42.\n"
    assert table.startswith("DataFrame, 3 rows x 2 columns\ncolumns: city (")
    assert "temp (float64)\nfirst rows:\n" in table
    assert "Oslo" in table and "31.2" in table
    assert sent.endswith("Keep {braces} and 41.")
    answer = magics.session.conversation.messages[-1]
    assert answer["role"] == "assistant" and answer["content"]  # the tiny model really answered


def test_a_dataframe_shows_only_its_head(shell: Any) -> None:
    import pandas as pd

    shell.user_ns["big"] = pd.DataFrame({"n": range(1000)})
    text = NotebookContext(shell, ErrorLog()).expand("{big}")
    assert "1000 rows x 1 columns" in text
    assert "999" not in text and len(text.splitlines()) == 3 + 6  # header lines, column names, 5 rows


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("what is {nothing_here}?", "no variable 'nothing_here'"),
        ("{In[99]}", "no such cell (this kernel has run 1)"),
        ("{Out[1]}", "In[1] has no output"),
        ("{In}", "name a cell"),
        ("{x + 1}", "name a variable, In[N], Out[N], Err or Err[N]"),
        ("a dict {'a': 1}", "name a variable"),
        ("a lone { brace", "stray brace"),
        ("{Err}", "no cell has raised an error yet"),
    ],
)
def test_unknown_names_are_one_clear_line(shell: Any, no_last_error: None, prompt: str, message: str) -> None:
    _run(shell, "x = 1")
    with pytest.raises(UsageError, match=r"in the prompt|stray brace") as info:
        NotebookContext(shell, ErrorLog()).expand(prompt)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_name_in_a_cell_stops_before_the_model(shell: Any, magics: Any) -> None:
    result = _run(shell, "%%foundry tiny -n 4\nSummarise {missing_table}")
    assert isinstance(result.error_in_exec, UsageError)
    assert "missing_table" in str(result.error_in_exec)
    assert magics.session.conversation.messages == []


def test_err_is_the_last_error_with_its_traceback(shell: Any, magics: Any) -> None:
    _run(shell, "def ratio(a, b):\n    return a / b")
    _run(shell, "total = 3\nratio(total, 0)")
    sent = _ask(shell, magics, "%%foundry tiny -n 4\nWhy does this fail?\n{Err}")
    assert 'File "In[2]", line 2, in <module>' in sent
    assert 'File "In[1]", line 2, in ratio' in sent
    assert sent.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "interactiveshell.py" not in sent  # IPython's own frames are left out
    assert "{Err}" not in sent


def test_err_n_names_a_cells_error_the_magics_saw(shell: Any, magics: Any) -> None:
    _run(shell, "int('seven')")  # In[1]
    _run(shell, "%foundry status")  # In[2]: the magics note In[1]'s error
    _run(shell, "[][3]")  # In[3]
    context = magics.context
    assert context.expand("{Err[1]}").endswith("ValueError: invalid literal for int() with base 10: 'seven'")
    assert context.expand("{Err[3]}").endswith("IndexError: list index out of range")
    assert context.expand("{Err}") == context.expand("{Err[3]}")
    with pytest.raises(UsageError, match=r"no error known from In\[2\] \(errors known: Err\[1\], Err\[3\]"):
        context.expand("{Err[2]}")


def test_a_syntax_error_names_its_cell_without_ipython_frames(shell: Any, magics: Any) -> None:
    _run(shell, "def broken(:\n    pass")
    error = magics.errors.last(shell)
    assert error.cell == 1 and error.source == "def broken(:\n    pass"
    assert error.traceback.startswith('  File "In[1]", line 1')
    assert error.summary.startswith("SyntaxError")


def test_run_prompt_names_state_and_ipython_still_expands_arguments(shell: Any, magics: Any) -> None:
    shell.user_ns["which"] = "tiny"
    shell.user_ns["numbers"] = [1, 2, 3]
    _run(shell, "%foundry run {which} -n 3 what is the sum of {numbers}? {{not a field}}")
    assert magics.session.active_model == TINY_ID
    assert _sent(magics) == "what is the sum of [1, 2, 3]? {not a field}"
    _run(shell, "%foundry use {which}")  # other commands keep IPython's {var} expansion
    assert magics.session.active_model == TINY_ID


def test_format_code_puts_the_answers_code_in_a_new_cell(shell: Any, magics: Any) -> None:
    shell.rl_next_input = None
    sent = _ask(shell, magics, "%%foundry tiny -n 8 -f code\nPrint the first ten squares")
    assert sent == f"Print the first ten squares\n\n{CODE_INSTRUCTION}"
    answer = magics.session.conversation.messages[-1]["content"]
    assert shell.rl_next_input == extract_code(answer)
    assert shell.rl_next_input  # the random model's answer has no fence: the whole answer goes in

    shell.rl_next_input = None
    _run(shell, "%foundry run tiny -n 3 --format code sort a list")
    assert shell.rl_next_input == extract_code(magics.session.conversation.messages[-1]["content"])


def test_markdown_format_leaves_the_next_cell_alone(shell: Any) -> None:
    shell.rl_next_input = None
    _run(shell, "%%foundry tiny -n 3\nhello")
    assert shell.rl_next_input is None


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("Here:\n```python\nprint(1)\n```\nDone.", "print(1)"),
        ("```\na = 1\n```\nand\n```py\nb = 2\n```", "a = 1\n\nb = 2"),
        ("  x = 1  \n", "x = 1"),
        ("```python\n\n```\nplain", "```python\n\n```\nplain"),
    ],
)
def test_extract_code(answer: str, code: str) -> None:
    assert extract_code(answer) == code


def test_explain_sends_the_failing_cell_and_its_traceback(shell: Any, magics: Any) -> None:
    _run(shell, "prices = {'apple': 3}")
    _run(shell, "prices['pear'] * 2")
    sent = _ask(shell, magics, "%foundry explain tiny -n 4")
    assert "cell In[2] raised an error" in sent
    assert "```python\nprices['pear'] * 2\n```" in sent
    assert "KeyError: 'pear'" in sent
    assert magics.session.conversation.messages[-1]["role"] == "assistant"


def test_explain_without_an_error_says_so(shell: Any, no_last_error: None) -> None:
    with pytest.raises(FoundryCellError, match="no error to explain"):
        shell.run_line_magic("foundry", "explain tiny")


def test_format_code_in_a_real_kernel_asks_the_front_end_for_a_new_cell(cache_copy: Any) -> None:
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        setup = client.execute_interactive("%load_ext foundry_jupyter", timeout=60)
        assert setup["content"]["status"] == "ok"
        reply = client.execute_interactive(
            "%%foundry tiny -n 8 --format code\nWrite a function that adds two numbers", timeout=120
        )
        assert reply["content"]["status"] == "ok"
        payloads = [p for p in reply["content"]["payload"] if p.get("source") == "set_next_input"]
        assert len(payloads) == 1 and payloads[0]["replace"] is False and payloads[0]["text"]
        check = client.execute_interactive(
            "from foundry_jupyter.kernel.context import extract_code\n"
            "m = get_ipython().magics_manager.registry['FoundryMagics']\n"
            "assert extract_code(m.session.conversation.messages[-1]['content']) == "
            f"{payloads[0]['text']!r}",
            timeout=60,
        )
        assert check["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_a_library_error_keeps_the_cells_and_the_innermost_library_frames(shell: Any, magics: Any) -> None:
    import pandas as pd

    shell.user_ns["frame"] = pd.DataFrame({"a": [1]})
    _run(shell, "frame['missing'].sum()")
    text = magics.context.expand("{Err}")
    assert text.startswith('Traceback (most recent call last):\n  File "In[1]", line 1, in <module>')
    assert 'File "pandas/' in text and "site-packages" not in text
    assert "direct cause" not in text  # pandas' own inner KeyError says nothing about the cell
    assert text.count('  File "') <= 1 + 3  # the cell's frame, at most two library frames and "(N more)"
    assert text.endswith("KeyError: 'missing'")
