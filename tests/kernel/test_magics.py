"""%foundry / %%foundry through a real InteractiveShell, the kernel-resident engine and the tiny model."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from IPython.core.error import UsageError

from foundry_jupyter.engine.testmodel import TINY_ID
from foundry_jupyter.kernel.magics import FoundryCellError
from foundry_jupyter.kernel.markdown import escape_dollars
from foundry_jupyter.kernel.results import METADATA_KEY, History
from foundry_jupyter.kernel.tables import CACHE_COLUMNS


def _chat_displays(shell: Any) -> list[dict[str, Any]]:
    return [c for c in shell.display_pub.calls if "data" in c and "text/markdown" in c["data"]]


def test_cell_streams_into_one_display_updated_in_place(shell: Any, magics: Any) -> None:
    shell.run_cell_magic("foundry", "tiny --max-tokens 10", "Hello, who are you?")
    calls = _chat_displays(shell)
    first, updates = calls[0], calls[1:]
    assert not first["update"] and first["display_id"]
    assert len(updates) >= 2, "the answer should arrive in several pieces"
    assert all(c["update"] and c["display_id"] == first["display_id"] for c in updates)
    texts = [c["data"]["text/plain"] for c in updates]
    for shorter, longer in itertools.pairwise(texts):
        assert longer.startswith(shorter)  # each redraw extends the text shown before
    final = updates[-1]
    provenance = final["metadata"][METADATA_KEY]
    assert provenance["model"] == TINY_ID
    assert provenance["backend"] == "kernel"
    assert provenance["execution_provider"]
    usage = provenance["usage"]
    assert 1 <= usage["completion_tokens"] <= 10
    assert usage["prompt_tokens"] > 0
    answer = magics.session.conversation.messages[-1]
    assert answer == {"role": "assistant", "content": final["data"]["text/plain"]}
    assert final["data"]["text/markdown"] == escape_dollars(answer["content"])
    assert magics.session.active_model == TINY_ID


def test_conversation_continues_until_new_or_reset(shell: Any, magics: Any) -> None:
    shell.run_cell_magic("foundry", "tiny -n 4 --system 'Be brief.'", "First question")
    shell.run_cell_magic("foundry", "-n 4", "Second question")  # the active model carries on
    history = shell.run_line_magic("foundry", "history")
    assert isinstance(history, History)
    roles = [m["role"] for m in history.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert history[0]["content"] == "Be brief."
    assert [m["content"] for m in history.messages if m["role"] == "user"] == [
        "First question",
        "Second question",
    ]
    usages = [c["metadata"][METADATA_KEY]["usage"] for c in _chat_displays(shell) if c["metadata"]]
    assert usages[1]["prompt_tokens"] > usages[0]["prompt_tokens"]  # the second turn sent the first along

    shell.run_cell_magic("foundry", "--new -n 3", "Fresh start")
    assert [m["role"] for m in magics.session.conversation.messages] == ["user", "assistant"]
    shell.run_line_magic("foundry", "reset")
    assert magics.session.conversation.messages == []
    assert "No conversation yet" in str(shell.run_line_magic("foundry", "history"))


def test_run_with_a_prompt_activates_and_answers(shell: Any, magics: Any) -> None:
    shell.run_line_magic(
        "foundry", f"run {TINY_ID} what's the weather like?"
    )  # ':' in the id, ' in the prompt
    assert magics.session.active_model == TINY_ID
    assert magics.session.conversation.messages[0] == {"role": "user", "content": "what's the weather like?"}
    assert _chat_displays(shell)[-1]["metadata"][METADATA_KEY]["model"] == TINY_ID


def test_run_without_a_prompt_gives_the_chat_widget(shell: Any) -> None:
    from foundry_jupyter.kernel.widgets import ChatWidget

    widget = shell.run_line_magic("foundry", "run tiny")
    assert isinstance(widget, ChatWidget)


def test_tables_are_dataframes(shell: Any, cache_copy: Any) -> None:
    import pandas as pd

    cache = shell.run_line_magic("foundry", "cache")
    assert isinstance(cache, pd.DataFrame)
    assert list(cache.columns) == list(CACHE_COLUMNS)
    row = cache.set_index("id").loc[TINY_ID]
    on_disk = sum(f.stat().st_size for f in cache_copy.rglob("*") if f.is_file() and f.name != ".last_used")
    assert row["size_bytes"] == on_disk
    assert row["size"].endswith(("KiB", "MiB"))
    assert row["alias"] == "tiny" and row["device"] == "CPU"
    assert str(cache["last_used"].dtype) == "datetime64[ns, UTC]"

    catalog = shell.run_line_magic("foundry", "list tiny")
    assert {"alias", "id", "device", "execution_provider", "size_bytes", "size", "cached", "loaded"} <= set(
        catalog.columns
    )
    tiny = catalog.set_index("id").loc[TINY_ID]
    assert bool(tiny["cached"]) and not bool(tiny["loaded"])
    assert shell.run_line_magic("foundry", "list no-such-thing").empty

    assert shell.run_line_magic("foundry", "ps").empty
    notice = shell.run_line_magic("foundry", "load tiny")
    assert TINY_ID in str(notice)
    loaded = shell.run_line_magic("foundry", "ps")
    assert loaded["id"].tolist() == [TINY_ID]
    assert loaded["execution_provider"].iloc[0]
    assert bool(shell.run_line_magic("foundry", "list").set_index("id").loc[TINY_ID, "loaded"])

    shell.run_line_magic("foundry", "unload tiny")
    assert shell.run_line_magic("foundry", "ps").empty


def test_last_used_is_a_timestamp_after_a_chat(shell: Any) -> None:
    import pandas as pd

    shell.run_cell_magic("foundry", "tiny -n 2", "hi")
    stamp = shell.run_line_magic("foundry", "cache").set_index("id").loc[TINY_ID, "last_used"]
    assert isinstance(stamp, pd.Timestamp) and stamp.tzinfo is not None


def test_remove_and_download_again(shell: Any) -> None:
    shell.run_line_magic("foundry", "load tiny")
    removed = shell.run_line_magic("foundry", "remove tiny")
    assert TINY_ID in str(removed)
    assert shell.run_line_magic("foundry", "cache").empty
    assert shell.run_line_magic("foundry", "ps").empty  # removing unloads first
    shell.run_line_magic("foundry", "download tiny")
    assert shell.run_line_magic("foundry", "cache")["id"].tolist() == [TINY_ID]


def test_status_and_backend(shell: Any, magics: Any) -> None:
    status = shell.run_line_magic("foundry", "status")
    assert status.data["backend"] == "kernel"
    assert "kernel" in str(status)
    assert "backend" in status._repr_html_()
    assert "kernel" in str(shell.run_line_magic("foundry", "backend kernel"))
    with pytest.raises(FoundryCellError, match="no Foundry service"):
        shell.run_line_magic("foundry", "backend server")
    assert magics.session.backend.name == "kernel"  # a failed switch keeps what worked


def test_hardware_report(shell: Any) -> None:
    report = shell.run_line_magic("foundry", "hardware")
    providers = {p["name"]: p for p in report.data["executionProviders"]}
    assert providers["cpu"]["usable"] is True
    text = str(report)
    assert "Execution providers" in text and "cpu" in text
    assert "<table>" in report._repr_html_()


def test_config_traits(shell: Any, magics: Any) -> None:
    shell.run_line_magic("config", "FoundryMagics.default_model = 'tiny'")
    assert magics.session.default_model == "tiny"
    shell.run_cell_magic("foundry", "-n 2", "no model named: the default one answers")
    assert magics.session.active_model == TINY_ID


def test_no_model_chosen_is_one_line(shell: Any) -> None:
    with pytest.raises(FoundryCellError, match="no model chosen"):
        shell.run_cell_magic("foundry", "", "hello")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bogus", "unknown command 'bogus'"),
        ("load", "required: model"),
        ("backend gpu", "invalid choice"),
        ("run --max-tokens lots tiny hi", "expected a whole number"),
        ('load "tiny', "No closing quotation"),
    ],
)
def test_bad_line_arguments_give_usage(shell: Any, line: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("foundry", line)
    text = str(info.value)
    assert message in text
    assert "usage:" in text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--max-tokens 0", "must be at least 1"),
        ("--temperature hot", "expected a number"),
        ("--json-schema '[1, 2'", "not JSON"),
        ("--json-schema not_defined_anywhere", "not JSON and not a variable"),
        ("--bogus", "unrecognized arguments"),
    ],
)
def test_bad_cell_arguments_give_usage(shell: Any, line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_cell_magic("foundry", line, "hello")


def test_errors_show_one_line_and_no_traceback(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.run_cell("%foundry load no-such-model")
    out = capsys.readouterr()
    shown = out.out + out.err
    assert result.error_in_exec is not None
    assert "Unknown model 'no-such-model'" in shown
    assert "Traceback" not in shown and "File " not in shown

    result = shell.run_cell("%foundry bogus")
    out = capsys.readouterr()
    shown = out.out + out.err
    assert "UsageError" in shown and "unknown command" in shown
    assert "Traceback" not in shown


def test_json_schema_from_a_variable(shell: Any, magics: Any) -> None:
    shell.user_ns["schema"] = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    shell.run_cell_magic("foundry", "tiny -n 16 --json-schema schema", "Give me JSON")
    answer = magics.session.conversation.messages[-1]["content"]
    assert answer.lstrip().startswith("{")  # the grammar forces a JSON object from the first token


def test_text_mode_prints_for_terminals(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("config", "FoundryMagics.stream_mode = 'text'")
    shell.run_cell_magic("foundry", "tiny -n 5", "Hello")
    out = capsys.readouterr().out
    assert f"[{TINY_ID}" in out
    assert not _chat_displays(shell)


def test_help(shell: Any) -> None:
    text = str(shell.run_line_magic("foundry", "help"))
    for command in ("run", "list", "cache", "ps", "status", "hardware", "download", "load", "use"):
        assert f"  {command}" in text
    assert "--ttl" in str(shell.run_line_magic("foundry", "help load"))
    assert "--ttl" in str(shell.run_line_magic("foundry", "load --help"))
    assert "COMMAND" in str(shell.run_line_magic("foundry", ""))


def test_use_sets_the_active_model(shell: Any, magics: Any) -> None:
    notice = shell.run_line_magic("foundry", "use tiny")
    assert magics.session.active_model == TINY_ID
    assert TINY_ID in str(notice)
    with pytest.raises(FoundryCellError, match="Unknown model"):
        shell.run_line_magic("foundry", "use nope")


def test_load_ext_registers_magics_and_nothing_else(cache_copy: Any) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance()
    try:
        hooks_before = {name: list(cbs) for name, cbs in ip.events.callbacks.items()}
        excepthook_before = ip.CustomTB
        ip.run_line_magic("load_ext", "foundry_jupyter")
        assert "foundry" in ip.magics_manager.magics["line"]
        assert "foundry" in ip.magics_manager.magics["cell"]
        assert {name: list(cbs) for name, cbs in ip.events.callbacks.items()} == hooks_before
        assert ip.CustomTB is excepthook_before
        assert any(type(c).__name__ == "FoundryMagics" for c in ip.configurables)
    finally:
        InteractiveShell.clear_instance()


def test_a_prompt_too_long_for_the_model_is_one_line_with_a_hint(shell: Any, magics: Any) -> None:
    with pytest.raises(FoundryCellError, match="new conversation") as info:
        shell.run_cell_magic("foundry", "tiny", "word " * 20000)
    assert "\n" not in info.value.message
    assert not _chat_displays(shell)  # nothing was shown before the failure
    assert magics.session.conversation.messages == []


def test_run_without_a_prompt_in_a_terminal_says_what_to_do(shell: Any, magics: Any) -> None:
    shell.run_line_magic("config", "FoundryMagics.stream_mode = 'auto'")  # a plain shell: no kernel
    notice = shell.run_line_magic("foundry", "run tiny")
    assert f"Active model: {TINY_ID}" in str(notice)


def test_loading_the_extension_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'foundry_jupyter')\n"
        "heavy = [m for m in ('onnxruntime_genai', 'pandas', 'ipywidgets', 'openai', 'httpx', "
        "'jupyter_server', 'foundry_jupyter.server', 'foundry_jupyter.service') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_config_switch_to_a_missing_server_keeps_the_kernel(
    shell: Any, magics: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_line_magic("foundry", "status")  # the kernel backend is running
    shell.run_line_magic("config", "FoundryMagics.backend = 'server'")
    assert "no Foundry service" in capsys.readouterr().err
    assert magics.backend == "auto" and magics.session.backend.name == "kernel"


def test_system_prompt_trait_starts_new_conversations(shell: Any, magics: Any) -> None:
    shell.run_line_magic("config", "FoundryMagics.system_prompt = 'You are terse.'")
    shell.run_cell_magic("foundry", "tiny -n 2", "hi")
    shell.run_cell_magic("foundry", "-n 2", "again")
    roles = [m["role"] for m in magics.session.conversation.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert magics.session.conversation.messages[0]["content"] == "You are terse."


@pytest.mark.usefixtures("sigint_interrupts")
def test_interrupting_an_answer_keeps_what_came_and_the_model_still_works(shell: Any, magics: Any) -> None:
    import os
    import signal

    from foundry_jupyter.kernel.parsing import ChatOptions

    sent: list[str] = []

    def interrupt_once(text: str) -> None:
        if not sent:
            sent.append(text)
            os.kill(os.getpid(), signal.SIGINT)  # the notebook's Interrupt button

    # A budget far beyond what the tiny model makes before the interrupt lands, even on a fast machine.
    options = ChatOptions(model="tiny", max_tokens=900)
    result = magics.session.chat("Tell me a long story", options, on_text=interrupt_once)
    assert result.finish_reason == "cancelled"
    assert result.text.startswith(sent[0])
    assert magics.session.conversation.messages[-1] == {"role": "assistant", "content": result.text}
    after = magics.session.chat("Go on", ChatOptions(max_tokens=3))
    assert after.finish_reason in ("stop", "length") and after.usage is not None
