"""`%%foundry` chats that outgrow the model's context keep the system prompt and drop the oldest turns."""

from __future__ import annotations

from typing import Any

import pytest

from foundry_jupyter.kernel.magics import FoundryCellError
from foundry_jupyter.kernel.session import _drop_oldest_turn

LONG = " ".join(["the model answers in the notebook"] * 60)  # a few hundred tokens of the tiny model


def test_dropping_a_turn_keeps_the_system_prompt() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "a2"},
    ]
    assert _drop_oldest_turn(messages)
    assert [m["content"] for m in messages] == ["s", "u2", "a2"]
    assert _drop_oldest_turn(messages) and [m["content"] for m in messages] == ["s"]
    assert not _drop_oldest_turn(messages)


def test_a_long_conversation_keeps_answering(shell: Any, magics: Any, capsys: pytest.CaptureFixture) -> None:
    shell.run_cell_magic("foundry", "tiny --system 'be brief' -n 2", LONG)
    for _ in range(4):  # the tiny model's 1024-token context holds about two of these turns
        shell.run_cell_magic("foundry", "-n 2", LONG)
    out = capsys.readouterr().out
    assert "outgrew the model's context: dropped its" in out
    messages = magics.session.conversation.messages
    assert messages[0] == {"role": "system", "content": "be brief"}
    assert 1 <= magics.session.conversation.turns < 5 and messages[-2]["content"] == LONG
    # A single message that cannot fit still fails, with the advice to start afresh.
    with pytest.raises(FoundryCellError, match="context"):
        shell.run_cell_magic("foundry", "-n 2", LONG * 6)
