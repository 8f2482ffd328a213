"""ChatModel on the built-in tiny model: real inference through og.Engine and og.Generator."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundry_jupyter.engine.model import ChatModel
from foundry_jupyter.engine.types import GenerationParams, ResponseFormat
from foundry_jupyter.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound, ProviderUnavailable

GREEDY = GenerationParams(max_tokens=16, temperature=0)
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def generator_model(tiny_model_dir: Path) -> Iterator[ChatModel]:
    """The same folder served by plain og.Generator, holding nothing: the reference for cold answers."""
    with ChatModel.load(tiny_model_dir, model_id="tiny", use_engine=False, max_conversations=0) as m:
        yield m


@contextlib.contextmanager
def busy(model: ChatModel) -> Iterator[None]:
    """A lone request runs on og.Generator; while it streams, later requests go to the Engine."""
    lone = model.stream_chat([{"role": "user", "content": "keep busy"}], GenerationParams(max_tokens=900))
    assert lone.backend == "og.Generator"
    next(lone)
    try:
        yield
    finally:
        lone.close()


def test_load_reports_what_was_loaded(model: ChatModel) -> None:
    assert model.model_id == "tiny" and model.execution_provider == "cpu"
    assert model.context_length == 1024
    assert model.count_tokens(HELLO) == len(model.encode_chat(HELLO)) > 3


def test_greedy_is_deterministic_and_engine_equals_generator(
    model: ChatModel, generator_model: ChatModel
) -> None:
    first = model.complete_chat(HELLO, GREEDY)
    assert first.text and first.finish_reason == "length"
    assert first.usage.completion_tokens == 16 and first.usage.prompt_tokens == model.count_tokens(HELLO)
    assert model.complete_chat(HELLO, GREEDY).text == first.text
    assert generator_model.complete_chat(HELLO, GREEDY).text == first.text


def test_same_seed_same_text(model: ChatModel) -> None:
    def sampled(seed: int) -> str:
        return model.complete_chat(HELLO, GenerationParams(max_tokens=16, temperature=1.0, seed=seed)).text

    assert sampled(7) == sampled(7)
    assert len({sampled(seed) for seed in (1, 2, 3)}) > 1


def test_streaming_equals_non_streaming(model: ChatModel) -> None:
    deltas = list(model.stream_chat(HELLO, GREEDY))
    assert all(d.finish_reason is None for d in deltas[:-1])
    final = deltas[-1]
    assert final.finish_reason == "length" and final.usage is not None
    assert final.usage.total_tokens == final.usage.prompt_tokens + 16
    assert "".join(d.text for d in deltas) == model.complete_chat(HELLO, GREEDY).text
    assert len(deltas) > 2  # it really streamed


def test_stop_string_cuts_before_it(model: ChatModel) -> None:
    full = model.complete_chat(HELLO, GenerationParams(max_tokens=30, temperature=0)).text
    stop = full[10:14]
    expected = full[: full.index(stop)]
    params = GenerationParams(max_tokens=30, temperature=0, stop=(stop, "never-there"))
    done = model.complete_chat(HELLO, params)
    assert done.text == expected and done.finish_reason == "stop"
    streamed = list(model.stream_chat(HELLO, params))
    assert "".join(d.text for d in streamed) == expected  # no part of the stop string leaked out
    assert streamed[-1].finish_reason == "stop"


def test_max_tokens_and_context_limits(model: ChatModel) -> None:
    assert (
        model.complete_chat(HELLO, GenerationParams(max_tokens=3, temperature=0)).usage.completion_tokens == 3
    )
    long_text = " ".join(["notebook"] * 1100)
    with pytest.raises(ContextLengthExceeded) as info:
        model.complete_chat([{"role": "user", "content": long_text}], GREEDY)
    assert info.value.code == "context_length_exceeded" and "1024" in info.value.message
    # A prompt that fits leaves only the rest of the context for the answer.
    near = [{"role": "user", "content": " ".join(["notebook"] * 1000)}]
    prompt = model.count_tokens(near)
    assert prompt < 1024
    done = model.complete_chat(near, GenerationParams(max_tokens=500, temperature=0))
    assert done.usage.completion_tokens <= 1024 - prompt
    with pytest.raises(InvalidRequest):
        model.complete_chat(HELLO, GenerationParams(max_tokens=0))


def test_a_prompt_far_over_the_context_is_refused_before_tokenizing(
    model: ChatModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(text: str) -> list[int]:
        raise AssertionError("tokenized")

    monkeypatch.setattr(model._prompts, "encode", never)
    huge = "word " * (model.context_length * 13)  # more characters than any tokenization could fit
    with pytest.raises(ContextLengthExceeded, match="characters") as info:
        model.stream_chat([{"role": "user", "content": huge}], GREEDY)
    assert info.value.param == "messages"
    with pytest.raises(ContextLengthExceeded, match="characters") as info:
        model.stream_text(huge, GREEDY)
    assert info.value.param == "prompt"


def test_json_schema_output_parses_and_validates(model: ChatModel) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "green", "blue"]}},
        "required": ["ok", "color"],
        "additionalProperties": False,
    }
    fmt = ResponseFormat(kind="json_schema", schema=schema)
    done = model.complete_chat(HELLO, GenerationParams(max_tokens=40, temperature=0, response_format=fmt))
    assert done.finish_reason == "stop", done  # completed, not cut by the budget
    data = json.loads(done.text)
    assert set(data) == {"ok", "color"}
    assert isinstance(data["ok"], bool) and data["color"] in ("red", "green", "blue")
    # Sampled, through og.Generator: still valid.
    seeded = GenerationParams(max_tokens=40, temperature=1.0, seed=5, response_format=fmt)
    assert set(json.loads(model.complete_chat(HELLO, seeded).text)) == {"ok", "color"}


def test_json_object_starts_an_object(model: ChatModel) -> None:
    fmt = ResponseFormat(kind="json_object")
    done = model.complete_chat(HELLO, GenerationParams(max_tokens=8, temperature=0, response_format=fmt))
    assert done.text.startswith("{")


def test_concurrent_requests_match_sequential(model: ChatModel, generator_model: ChatModel) -> None:
    prompts = [[{"role": "user", "content": f"question {i} " * (i + 1)}] for i in range(4)]
    expected = [generator_model.complete_chat(p, GREEDY).text for p in prompts]
    results: dict[int, str] = {}
    barrier = threading.Barrier(len(prompts))

    def worker(i: int) -> None:
        barrier.wait(timeout=30)
        results[i] = "".join(d.text for d in model.stream_chat(prompts[i], GREEDY))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [results.get(i) for i in range(len(prompts))] == expected


@pytest.mark.parametrize(
    ("params", "backend"),
    [
        (GenerationParams(max_tokens=800, temperature=0), "og.Engine"),
        (GenerationParams(max_tokens=800, temperature=1.0, seed=9), "og.Generator"),
    ],
)
def test_cancel_event_stops_mid_way(model: ChatModel, params: GenerationParams, backend: str) -> None:
    cancel = threading.Event()
    deltas = []
    with busy(model):
        stream = model.stream_chat(HELLO, params, cancel=cancel)
    assert stream.backend == backend
    for delta in stream:
        deltas.append(delta)
        if len(deltas) == 3:
            cancel.set()
    assert deltas[-1].finish_reason == "cancelled"
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens < 50


def test_closing_the_stream_cancels_and_the_model_keeps_serving(model: ChatModel) -> None:
    stream = model.stream_chat(HELLO, GenerationParams(max_tokens=800, temperature=0))
    next(stream)
    stream.close()
    # The abandoned request must not hold the engine: the next one finishes normally.
    assert model.complete_chat(HELLO, GREEDY).finish_reason == "length"


def test_continued_conversation_reuses_its_history(tiny_model_dir: Path, generator_model: ChatModel) -> None:
    # Reuse needs the resent history to tokenize back into exactly the ids generated; a random model
    # sometimes emits a non-canonical split, so some of these conversations cannot be continued. Each
    # one must still give the cold run's text, and the canonical ones must reuse everything they held.
    # While another request runs, these go to the Engine, which continues its own requests. (A fresh
    # model: one holding generators from earlier tests would answer some first turns from those.)
    model = ChatModel.load(tiny_model_dir)
    reused = 0
    for topic in ("hello", "what is up", "tell me about the notebook kernel", "a", "json"):
        first = [{"role": "user", "content": topic}]
        with busy(model):
            answer = model.complete_chat(first, GREEDY)
            assert answer.usage.cached_tokens == 0 and answer.extra["backend"] == "og.Engine"
            history = [
                *first,
                {"role": "assistant", "content": answer.text},
                {"role": "user", "content": "more"},
            ]
            follow = model.complete_chat(history, GREEDY)
        assert follow.usage.prompt_tokens == model.count_tokens(history)
        assert follow.text == generator_model.complete_chat(history, GREEDY).text  # same as a cold run
        if follow.usage.cached_tokens:
            assert follow.extra["backend"] == "og.Engine"
            assert follow.usage.cached_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
            reused += 1
    model.close()
    assert reused >= 3


def test_generator_conversations_reuse_the_shared_prefix(
    tiny_model_dir: Path, generator_model: ChatModel
) -> None:
    # og.Generator rewinds to the longest shared prefix, so even a non-canonical answer keeps its prompt.
    with ChatModel.load(tiny_model_dir, use_engine=False, max_conversations=2) as m:
        for topic in ("hello", "tell me about the notebook kernel"):
            first = [{"role": "user", "content": topic}]
            answer = m.complete_chat(first, GREEDY)
            history = [
                *first,
                {"role": "assistant", "content": answer.text},
                {"role": "user", "content": "more"},
            ]
            follow = m.complete_chat(history, GREEDY)
            assert follow.extra["backend"] == "og.Generator"
            assert answer.usage.prompt_tokens <= follow.usage.cached_tokens < follow.usage.prompt_tokens
            assert follow.text == generator_model.complete_chat(history, GREEDY).text
        assert m.held_conversations == 2
        # Sampled answers are never continued from a held generator (the seed decides the text).
        sampled = m.complete_chat(history, GenerationParams(max_tokens=8, temperature=1.0, seed=1))
        assert sampled.usage.cached_tokens == 0


def test_plain_text_prompts(model: ChatModel, generator_model: ChatModel) -> None:
    done = model.complete_text("Once upon a time", GREEDY)
    assert done.usage.prompt_tokens == len(model.encode("Once upon a time"))
    assert done.text == "".join(d.text for d in generator_model.stream_text("Once upon a time", GREEDY))


@pytest.mark.parametrize(
    "messages",
    [[], [{"role": "wizard", "content": "x"}], [{"role": "user", "content": 5}], ["hello"], "hello"],
)
def test_bad_messages_are_clear_errors(model: ChatModel, messages: object) -> None:
    with pytest.raises(InvalidRequest):
        model.complete_chat(messages, GREEDY)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "params",
    [GenerationParams(temperature=-1), GenerationParams(top_p=0), GenerationParams(stop=("",))],
)
def test_bad_parameters_are_clear_errors(model: ChatModel, params: GenerationParams) -> None:
    with pytest.raises(InvalidRequest):
        model.complete_chat(HELLO, params)


def test_unavailable_provider_and_missing_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable, match="cuda") as info:
        ChatModel.load(tiny_model_dir, ep="CUDAExecutionProvider")
    assert "cpu" in info.value.message  # says what would work
    with pytest.raises(ModelNotFound, match=r"genai_config\.json"):
        ChatModel.load(tmp_path / "nothing-here")


@pytest.mark.parametrize(
    "fmt",
    [
        ResponseFormat(kind="json_schema", schema={"type": "nonsense"}),
        ResponseFormat(kind="regex", grammar="(unclosed"),
        ResponseFormat(kind="json_schema", schema=None),
    ],
)
@pytest.mark.parametrize("seed", [None, 3])  # og.Engine, and og.Generator for seeded sampling
def test_bad_grammar_is_a_clear_error(model: ChatModel, fmt: ResponseFormat, seed: int | None) -> None:
    params = GenerationParams(max_tokens=4, temperature=1.0 if seed else 0, seed=seed, response_format=fmt)
    with pytest.raises(InvalidRequest, match="response_format"):
        model.complete_chat(HELLO, params)


def test_regex_guidance(model: ChatModel) -> None:
    fmt = ResponseFormat(kind="regex", grammar="[ab]{3}")
    done = model.complete_chat(HELLO, GenerationParams(max_tokens=10, temperature=0, response_format=fmt))
    assert done.finish_reason == "stop" and len(done.text) == 3 and set(done.text) <= {"a", "b"}


def test_a_request_arriving_mid_batch_does_not_wait_for_it(
    model: ChatModel, generator_model: ChatModel
) -> None:
    with busy(model):
        long_run = model.stream_chat(HELLO, GenerationParams(max_tokens=900, temperature=0))
        assert long_run.backend == "og.Engine"
        next(long_run)  # the batch is generating now
        other = [{"role": "user", "content": "a late question"}]
        late = model.complete_chat(other, GREEDY)
        # og 0.18 batches this model statically: the late request is served by og.Generator at once
        # instead of queueing behind the 900-token batch, with the same text.
        assert late.extra["backend"] == "og.Generator"
        assert late.text == generator_model.complete_chat(other, GREEDY).text
        long_run.close()  # returns once the engine has stopped it: the next request finds it idle
        q = [{"role": "user", "content": "q"}]
        assert model.complete_chat(q, GREEDY).extra["backend"] == "og.Engine"


def test_exiting_with_a_live_model_and_an_open_stream_is_clean(tiny_model_dir: Path) -> None:
    # og aborts the process when an Engine is alive at interpreter finalization; CLI runs exit like this.
    code = (
        "import sys\n"
        "from foundry_jupyter.engine.model import ChatModel\n"
        "from foundry_jupyter.engine.types import GenerationParams\n"
        "m = ChatModel.load(sys.argv[1])\n"
        "s = m.stream_chat([{'role': 'user', 'content': 'hi'}], GenerationParams(max_tokens=900))\n"
        "next(s)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tiny_model_dir)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("seed", [None, 3])
def test_a_bad_grammar_fails_at_the_call_not_mid_stream(model: ChatModel, seed: int | None) -> None:
    fmt = ResponseFormat(kind="regex", grammar="(unclosed")
    params = GenerationParams(max_tokens=4, temperature=1.0 if seed else 0, seed=seed, response_format=fmt)
    with pytest.raises(InvalidRequest, match="response_format"):
        model.stream_chat(HELLO, params)  # before any iteration: a server can still answer 400


def test_a_cpu_model_gets_every_core_unless_its_folder_says(tiny_model_dir: Path, tmp_path: Path, model):
    import os
    import shutil

    from foundry_jupyter.engine.hardware import cpu_threads

    assert 1 <= cpu_threads() <= (os.cpu_count() or 1)
    assert model.cpu_threads == 1  # the tiny folder sets intra_op_num_threads itself
    folder = tmp_path / "tiny-unset"
    shutil.copytree(tiny_model_dir, folder)
    config_file = folder / "genai_config.json"
    config = json.loads(config_file.read_text())
    del config["model"]["decoder"]["session_options"]["intra_op_num_threads"]
    config_file.write_text(json.dumps(config))
    with ChatModel.load(folder, model_id="tiny") as unset:
        assert unset.cpu_threads == cpu_threads()
        assert unset.complete_chat(HELLO, GREEDY).text == model.complete_chat(HELLO, GREEDY).text
