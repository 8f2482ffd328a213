"""The widgets' state after their buttons are clicked (the handlers a browser click would call)."""

from __future__ import annotations

from typing import Any

from foundry_jupyter.engine.testmodel import TINY_ID
from foundry_jupyter.kernel.widgets import ChatWidget, HardwarePanel, ModelPicker


def _row(picker: ModelPicker) -> dict[str, Any]:
    row = picker.selected()
    assert row is not None
    return row


def test_model_picker_buttons(shell: Any, magics: Any) -> None:
    picker = shell.run_line_magic("foundry", "picker")
    assert isinstance(picker, ModelPicker)
    picker.choice.value = TINY_ID
    assert _row(picker)["cached"] and not _row(picker)["loaded"]
    assert picker.download_button.disabled and not picker.load_button.disabled
    assert picker.unload_button.disabled
    assert "tiny" in picker.table.value

    picker.load_button.click()
    assert _row(picker)["loaded"]
    assert picker.load_button.disabled and not picker.unload_button.disabled
    assert "Loaded " + TINY_ID in picker.status.value
    assert [m["id"] for m in magics.session.backend.loaded()] == [TINY_ID]

    picker.use_button.click()
    assert magics.session.active_model == TINY_ID
    assert picker.use_button.disabled
    assert "★" in picker.table.value

    picker.unload_button.click()
    assert not _row(picker)["loaded"] and magics.session.backend.loaded() == []

    picker.remove_button.click()
    assert not _row(picker)["cached"]
    assert magics.session.active_model is None
    assert not picker.download_button.disabled and picker.remove_button.disabled

    picker.download_button.click()
    assert _row(picker)["cached"]
    assert picker.progress.layout.visibility == "hidden"  # only shown while bytes move
    assert "is in the cache" in picker.status.value


def test_model_picker_reports_errors_in_its_status(shell: Any, magics: Any) -> None:
    picker = ModelPicker(magics.session)
    picker.choice.value = TINY_ID
    magics.session.backend.remove(TINY_ID)  # behind the picker's back
    picker.unload_button.disabled = False
    picker.unload_button.click()
    assert "not loaded" in picker.status.value and "color" in picker.status.value


def test_hardware_panel_resolves_an_alias(shell: Any, magics: Any) -> None:
    panel = shell.run_line_magic("foundry", "hardware --widget")
    assert isinstance(panel, HardwarePanel)
    assert "Execution providers" in panel.summary.value and "cpu" in panel.summary.value
    panel.alias.value = "tiny"
    panel.resolve_button.click()
    assert TINY_ID in panel.variant.value and "cached" in panel.variant.value
    panel.alias.value = "no-such-alias"
    panel.resolve_button.click()
    assert "Unknown model" in panel.variant.value


def test_chat_widget_answers_and_shares_the_conversation(shell: Any, magics: Any) -> None:
    widget = shell.run_line_magic("foundry", "run tiny")
    assert isinstance(widget, ChatWidget)
    assert widget.stop_button.disabled
    widget.input.value = "Hello from the widget"
    widget.send_button.click()
    widget.wait(60)
    assert widget.thread is not None and not widget.thread.is_alive()
    assert widget.send_button.disabled is False and widget.stop_button.disabled is True
    assert widget.input.value == ""
    messages = magics.session.conversation.messages
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert "Hello from the widget" in widget.transcript.value
    assert TINY_ID in widget.status.value
    # the next %%foundry cell continues the widget's conversation
    shell.run_cell_magic("foundry", "-n 2", "and a cell after it")
    assert len(magics.session.conversation.messages) == 4


def test_chat_widget_stop_button_cuts_the_answer_short(shell: Any, magics: Any) -> None:
    shell.run_line_magic("foundry", "use tiny")
    widget = ChatWidget(magics.session, max_updates_per_s=0)
    widget.defaults = widget.defaults.__class__(max_tokens=200)

    def press_stop(change: dict[str, Any]) -> None:
        if "assistant" in change["new"]:
            widget.stop_button.click()

    widget.answer.observe(press_stop, names="value")
    widget.input.value = "Tell me a long story"
    widget.send_button.click()
    widget.wait(60)
    assert widget.last_result.finish_reason == "cancelled"
    assert widget.last_result.usage is None or widget.last_result.usage.completion_tokens < 200
    assert not widget.send_button.disabled and widget.stop_button.disabled


def test_chat_widget_refuses_an_empty_message(magics: Any) -> None:
    widget = ChatWidget(magics.session)
    widget.send_button.click()
    assert widget.thread is None and "type a message" in widget.status.value
