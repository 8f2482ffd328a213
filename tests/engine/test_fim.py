"""Fill-in-the-middle: FIM tokens read from a folder's tokenizer files, FIM prompts, and reuse of the
prefix across requests that extend it (what inline completion sends while someone types)."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundry_jupyter.engine.fim import FAMILIES, read_fim_tokens
from foundry_jupyter.engine.model import ChatModel
from foundry_jupyter.engine.testmodel import FIM_TOKENS, VOCAB_SIZE
from foundry_jupyter.engine.types import GenerationParams
from foundry_jupyter.errors import InvalidRequest

GREEDY = GenerationParams(max_tokens=12, temperature=0)
PREFIX = "def answer(question):\n    data = notebook cell python the"


def strip_fim(folder: Path) -> Path:
    """`folder`'s tokenizer files without the FIM tokens: a model that cannot fill in the middle."""
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["content"] not in FIM_TOKENS]
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    decoder = config["added_tokens_decoder"]
    config["added_tokens_decoder"] = {k: v for k, v in decoder.items() if v["content"] not in FIM_TOKENS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def fim_model(tiny_model_dir: Path) -> Iterator[ChatModel]:
    with ChatModel.load(tiny_model_dir, model_id="tiny") as m:
        yield m


@pytest.fixture(scope="module")
def plain_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatModel]:
    folder = strip_fim(Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("nofim") / "tiny")))
    with ChatModel.load(folder, model_id="tiny-nofim") as m:
        yield m


def test_tokens_are_read_from_the_tokenizer_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert read_fim_tokens(tiny_model_dir).names() == FIM_TOKENS
    assert read_fim_tokens(strip_fim(Path(shutil.copytree(tiny_model_dir, tmp_path / "a")))) is None
    # Qwen2.5-Coder's spelling, declared only in tokenizer_config.json's added_tokens_decoder.
    qwen = tmp_path / "qwen"
    qwen.mkdir()
    decoder = {str(151659 + i): {"content": t, "special": False} for i, t in enumerate(FAMILIES[1].names())}
    (qwen / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder}))
    assert read_fim_tokens(qwen) == FAMILIES[1]
    assert read_fim_tokens(tmp_path / "missing") is None


def test_fim_prompt_places_the_tokens_as_ids(fim_model: ChatModel) -> None:
    assert fim_model.fills_middle
    prompts = fim_model._prompts
    ids = prompts.encode_fill("x = 1", "print(x)")
    start, hole, middle = VOCAB_SIZE, VOCAB_SIZE + 1, VOCAB_SIZE + 2
    assert ids == [start, *prompts.encode("x = 1"), hole, *prompts.encode("print(x)"), middle]


def test_fim_streams_what_it_completes_and_differs_from_prefix_only(fim_model: ChatModel) -> None:
    done = fim_model.complete_text(PREFIX, GREEDY, suffix="\n    return data\n")
    streamed = "".join(d.text for d in fim_model.stream_text(PREFIX, GREEDY, suffix="\n    return data\n"))
    assert done.text == streamed and done.usage.completion_tokens > 0
    prefix_only = fim_model.complete_text(PREFIX, GREEDY)
    assert (
        done.usage.prompt_tokens
        == prefix_only.usage.prompt_tokens + len(fim_model.encode("\n    return data\n")) + 3
    )
    # An empty suffix is no suffix (as in OpenAI's API).
    assert fim_model.complete_text(PREFIX, GREEDY, suffix="").text == prefix_only.text


def test_model_without_fim_tokens_refuses_a_suffix(plain_model: ChatModel) -> None:
    assert not plain_model.fills_middle
    with pytest.raises(InvalidRequest) as info:
        plain_model.stream_text(PREFIX, GREEDY, suffix="return data")
    assert info.value.code == "fim_unsupported" and info.value.param == "suffix"
    assert plain_model.complete_text(PREFIX, GREEDY, suffix="").usage.completion_tokens > 0


@pytest.mark.parametrize("suffix", ["", "\n    return data\n"])
def test_a_longer_prefix_reuses_the_shorter_ones_state_even_when_cancelled(
    tiny_model_dir: Path, suffix: str
) -> None:
    with ChatModel.load(tiny_model_dir, model_id="tiny", use_engine=False) as model:
        cancel = threading.Event()
        params = GenerationParams(max_tokens=40, temperature=0)
        first = model.stream_text(PREFIX * 4, params, cancel, suffix=suffix)
        next(first)
        cancel.set()  # a keystroke: the client left after the first piece (the runner sets this)
        assert list(first)[-1].finish_reason == "cancelled"
        longer = PREFIX * 4 + " data"
        answer = model.complete_text(longer, GREEDY, suffix=suffix)
        assert answer.usage.cached_tokens >= len(model.encode(PREFIX * 4)) - 2
        cold = ChatModel.load(tiny_model_dir, model_id="cold", use_engine=False)
        with cold:
            assert cold.complete_text(longer, GREEDY, suffix=suffix).text == answer.text


def test_a_request_waits_for_the_cancelled_generation_it_extends(tiny_model_dir: Path) -> None:
    # The runner cancels the previous keystroke's request and starts the next one at once: the new
    # request must wait for the old one to finish its last token and be held, not start cold beside it.
    with ChatModel.load(tiny_model_dir, model_id="tiny", use_engine=False) as model:
        cancel = threading.Event()
        first = model.stream_text(PREFIX * 4, GenerationParams(max_tokens=40, temperature=0), cancel)
        next(first)
        ended: list[str | None] = []
        worker = threading.Timer(0.3, lambda: ended.append(list(first)[-1].finish_reason))
        worker.start()  # the old request's thread gets to its next token only later
        cancel.set()
        answer = model.complete_text(PREFIX * 4 + " data", GREEDY)
        worker.join()
        assert ended == ["cancelled"]
        assert answer.usage.cached_tokens >= len(model.encode(PREFIX * 4)) - 2
