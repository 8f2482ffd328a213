"""Which og API serves a request: a lone one runs on og.Generator at once, concurrent ones batch."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundry_jupyter.engine.model import ChatModel
from foundry_jupyter.engine.types import GenerationParams

GREEDY = GenerationParams(max_tokens=12, temperature=0)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def complete_together(model: ChatModel, prompts: list[list[dict[str, str]]]) -> list[tuple[str, str] | None]:
    """Each prompt from its own thread, released at once; (og API that answered, text) per prompt."""
    results: dict[int, tuple[str, str]] = {}
    barrier = threading.Barrier(len(prompts))

    def worker(i: int) -> None:
        barrier.wait(timeout=30)
        done = model.complete_chat(prompts[i], GREEDY)
        results[i] = (done.extra["backend"], done.text)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return [results.get(i) for i in range(len(prompts))]


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> Iterator[ChatModel]:
    with ChatModel.load(tiny_model_dir, use_engine=False, max_conversations=0) as m:
        yield m


def test_lone_requests_run_on_the_generator_and_free_the_model(
    model: ChatModel, reference: ChatModel
) -> None:
    for i in range(3):  # each one ended, so the next finds the model idle again
        done = model.complete_chat(ask(f"lone {i}"), GREEDY)
        assert done.extra["backend"] == "og.Generator"
        assert done.text == reference.complete_chat(ask(f"lone {i}"), GREEDY).text


@pytest.mark.parametrize("how", ["closed", "dropped", "partly read"])
def test_an_unfinished_lone_stream_frees_the_model(model: ChatModel, how: str) -> None:
    stream = model.stream_chat(ask("started, never read"), GenerationParams(max_tokens=50))
    assert stream.backend == "og.Generator"
    # While it is open, another request is load: it goes to the Engine.
    assert model.complete_chat(ask("meanwhile"), GREEDY).extra["backend"] == "og.Engine"
    if how == "closed":
        stream.close()
    elif how == "dropped":
        del stream
    else:
        next(stream)
        stream.close()
    assert model.complete_chat(ask("after"), GREEDY).extra["backend"] == "og.Generator"


def test_requests_arriving_during_a_lone_one_batch_with_the_same_text(
    model: ChatModel, reference: ChatModel
) -> None:
    lone = model.stream_chat(ask("the lone one"), GenerationParams(max_tokens=400, temperature=0))
    assert lone.backend == "og.Generator"
    next(lone)
    prompts = [ask(f"batched question {i} " * (i + 1)) for i in range(3)]
    results = complete_together(model, prompts)
    lone.close()
    assert results == [("og.Engine", reference.complete_chat(p, GREEDY).text) for p in prompts]


def test_a_lone_follow_up_continues_its_generator(model: ChatModel, reference: ChatModel) -> None:
    first = ask("tell me about the notebook kernel")
    answer = model.complete_chat(first, GREEDY)
    history = [*first, {"role": "assistant", "content": answer.text}, {"role": "user", "content": "more"}]
    follow = model.complete_chat(history, GREEDY)
    assert follow.extra["backend"] == "og.Generator"
    assert answer.usage.prompt_tokens <= follow.usage.cached_tokens < follow.usage.prompt_tokens
    assert follow.text == reference.complete_chat(history, GREEDY).text


def test_requests_sent_together_share_an_engine_batch(tiny_model_dir: Path, reference: ChatModel) -> None:
    with ChatModel.load(tiny_model_dir) as m:
        assert m._engine is not None
        load = m._engine.scheduler.load
        # A wait for company long enough that the second request surely comes within it (it ends then).
        load.solo_wait_s = 30
        prompts = [ask("sent together"), ask("at the same time")]
        assert complete_together(m, prompts) == [
            ("og.Engine", reference.complete_chat(p, GREEDY).text) for p in prompts
        ]
        load.solo_wait_s = 0  # no company now: a lone request claims the model at once
        assert m.complete_chat(ask("alone"), GREEDY).extra["backend"] == "og.Generator"


def test_a_burst_beyond_max_batch_runs_the_rest_on_generators(
    tiny_model_dir: Path, reference: ChatModel
) -> None:
    with ChatModel.load(tiny_model_dir) as m:
        assert m._engine is not None
        load = m._engine.scheduler.load
        # Generous windows: all three surely arrive within them, whatever the machine's load.
        load.solo_wait_s, load.gather_s, load.max_batch = 30, 1.0, 2
        prompts = [ask(f"one of three, number {i}") for i in range(3)]
        results = complete_together(m, prompts)
        assert sorted(r[0] for r in results) == ["og.Engine", "og.Engine", "og.Generator"]
        assert [r[1] for r in results] == [reference.complete_chat(p, GREEDY).text for p in prompts]


def test_the_wait_for_company_follows_the_models_speed(tiny_model_dir: Path) -> None:
    from foundry_jupyter.engine.load import SOLO_WAIT_S, SOLO_WAIT_SHARE

    with ChatModel.load(tiny_model_dir) as m:
        assert m._engine is not None
        s = m._engine.scheduler.load
        assert s.solo_wait() == SOLO_WAIT_S  # nothing measured yet
        started = time.monotonic()
        assert m.complete_chat(ask("alone"), GREEDY).extra["backend"] == "og.Generator"
        elapsed = time.monotonic() - started
        measured = s._first_token_s
        assert measured is not None and 0 < measured < elapsed
        assert s.solo_wait() == min(SOLO_WAIT_S, SOLO_WAIT_SHARE * measured)
        # A model that answers in a millisecond waits a tenth of one; a slow one waits the full cap.
        s._first_token_s = None
        s.observe_first_token(0.001)
        assert s.solo_wait() == pytest.approx(0.0001)
        for _ in range(30):
            s.observe_first_token(0.5)
        assert s.solo_wait() == SOLO_WAIT_S
        s.solo_wait_s = 0.02  # a fixed wait overrides the measured one
        assert s.solo_wait() == 0.02


def test_an_abandoned_engine_stream_is_released_and_stops_without_the_garbage_collector(
    model: ChatModel,
) -> None:
    """A stream dropped unclosed (a client that left, a loop that broke off) must stop generating as
    soon as the last reference goes, not when the cycle collector next runs."""
    lone = model.stream_chat(ask("keeps the generator busy"), GenerationParams(max_tokens=400))
    gc.disable()
    try:
        stream = model.stream_chat(ask("abandoned"), GenerationParams(max_tokens=400))
        assert stream.backend == "og.Engine"
        next(stream)
        released, generation = weakref.ref(stream), weakref.ref(stream.inner)
        del stream
        assert released() is None and generation() is None
    finally:
        gc.enable()
        lone.close()
    # Its job was cancelled and drained: the model is idle again.
    assert model.complete_chat(ask("after"), GREEDY).extra["backend"] == "og.Generator"
