"""A reasoning model in `%%foundry` cells: its thinking folded above the answer, out of the history.

The kernel-resident engine and the tiny model under chat templates that think (`tests.support.reasoning`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from foundry_jupyter.engine.types import GenerationParams, ResponseFormat
from foundry_jupyter.kernel.parsing import ChatOptions, parse_cell
from foundry_jupyter.kernel.results import METADATA_KEY, answer_bundle
from foundry_jupyter.kernel.streaming import MarkdownStream, TextStream
from tests.support.reasoning import OPENS_THINKING, SWITCHES_THINKING, with_template

THINKS = "tiny-think-generic-cpu:1"
SWITCHES = "tiny-switch-generic-cpu:1"
CLOSES = r"[a-z]{3,8} [a-z]{3,8}</think>[a-z]{3,8}"  # makes the random model write the closing tag


@pytest.fixture
def cache_copy(cache_copy: Path, tiny_model_dir: Path, tmp_path: Path) -> Path:
    for model_id, template in ((THINKS, OPENS_THINKING), (SWITCHES, SWITCHES_THINKING)):
        name = model_id.replace(":", "-")
        with_template(tiny_model_dir, tmp_path / name, template)
        folder = cache_copy / "foundry-jupyter" / name
        shutil.move(tmp_path / name, folder)
        (folder / "inference_model.json").write_text(json.dumps({"Name": model_id}))
    return cache_copy


def _displays(shell: Any) -> list[dict[str, Any]]:
    return [c for c in shell.display_pub.calls if "data" in c and "text/markdown" in c["data"]]


def test_thinking_streams_folded_and_stays_out_of_the_history(shell: Any, magics: Any) -> None:
    shell.run_cell_magic("foundry", f"{THINKS} -n 12 -t 0", "Why is the sky blue?")
    calls = _displays(shell)
    assert len(calls) >= 2  # streamed: shown, then updated in place
    for call in calls:
        markdown = call["data"]["text/markdown"]
        assert markdown.startswith("<details><summary>thinking</summary>")  # folded while it streams
        assert call["data"]["text/plain"].startswith("[thinking]\n")
    final = calls[-1]
    assert final["metadata"][METADATA_KEY]["finish_reason"] == "length"
    history = magics.session.conversation.messages
    assert history[-1] == {"role": "assistant", "content": ""}  # the budget ran out while thinking


def test_an_answer_after_thinking_is_all_the_history_keeps(shell: Any, magics: Any) -> None:
    session = magics.session
    closes = GenerationParams(
        max_tokens=40, temperature=0, response_format=ResponseFormat("regex", grammar=CLOSES)
    )
    sink = MarkdownStream(max_updates_per_s=0)
    result = session.chat("Why?", ChatOptions(model=THINKS), defaults=closes, sink=sink)
    assert result.reasoning and result.text and "<" not in result.reasoning + result.text
    assert session.conversation.messages[-1] == {"role": "assistant", "content": result.text}
    final = _displays(shell)[-1]["data"]
    assert final == answer_bundle(result.text, result.reasoning)
    assert final["text/markdown"].endswith(f"</details>\n\n{result.text}")
    assert f"\n\n{result.reasoning}\n\n" in final["text/markdown"]
    assert final["text/plain"] == f"[thinking]\n{result.reasoning}\n[/thinking]\n{result.text}"


def test_a_terminal_gets_the_thinking_then_the_answer(
    shell: Any, magics: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    closes = GenerationParams(
        max_tokens=40, temperature=0, response_format=ResponseFormat("regex", grammar=CLOSES)
    )
    result = magics.session.chat("Why?", ChatOptions(model=THINKS), defaults=closes, sink=TextStream())
    out = capsys.readouterr().out
    assert out.startswith(f"[thinking]\n{result.reasoning}\n[/thinking]\n{result.text}\n[")


def test_no_think_turns_thinking_off_where_the_template_can(shell: Any, magics: Any) -> None:
    args = parse_cell(f"{SWITCHES} --no-think -n 8 -t 0")
    assert args.thinking is False
    shell.run_cell_magic("foundry", f"{SWITCHES} --no-think -n 8 -t 0", "Why is the sky blue?")
    off = magics.session.conversation.messages[-1]["content"]
    shell.run_cell_magic("foundry", f"{SWITCHES} --new -n 8 -t 0", "Why is the sky blue?")
    default = magics.session.conversation.messages[-1]["content"]
    model = magics.session.backend._models[SWITCHES]
    ask = [{"role": "user", "content": "Why is the sky blue?"}]
    params = GenerationParams(max_tokens=8, temperature=0)
    assert off == model.complete_text(model.render_chat(ask, thinking=False), params).text
    assert default == model.complete_text(model.render_chat(ask), params).text
    assert "<details>" not in _displays(shell)[-1]["data"]["text/markdown"]
