"""Continuous batching on our own KV rows (`engine.slots`) over SmolLM2's int4-exact import (the
catalog's; the default int4 is checked alone and batched in `test_smollm2`).

Greedy answers must equal og.Generator's, alone, batched with later arrivals, and continued from a
held conversation.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gguf_import import greedy_answer
from foundry_jupyter.engine.model import SLOTS, SLOTS_ENV, ChatModel
from foundry_jupyter.engine.params import Sampling
from foundry_jupyter.engine.scheduler import EngineScheduler, Job
from foundry_jupyter.engine.slot_model import SlotModel, slot_graph
from foundry_jupyter.engine.slots import SlotScheduler
from foundry_jupyter.engine.stream import GENERATOR
from foundry_jupyter.engine.types import GenerationParams, ResponseFormat

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Count from 1 to 10.",
    "Name three colors.",
]
GREEDY = GenerationParams(max_tokens=24, temperature=0)


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def folder(smollm2_catalog) -> Path:
    return smollm2_catalog


@pytest.fixture(scope="module")
def slots(folder):
    with ChatModel.load(folder, model_id="smollm2") as model:
        assert isinstance(model._engine.scheduler, SlotScheduler)
        yield model


@pytest.fixture(scope="module")
def reference(folder):
    """og.Generator alone, holding no conversation: every answer computed cold."""
    with ChatModel.load(folder, model_id="smollm2", use_engine=False, max_conversations=0) as model:
        yield model


@pytest.fixture(scope="module")
def cold(reference) -> dict[str, str]:
    return {q: reference.complete_chat(chat(q), GREEDY).text for q in QUESTIONS}


def test_the_import_runs_on_slots_unless_turned_off(slots, folder, monkeypatch):
    answer = slots.complete_chat(chat(QUESTIONS[0]), GREEDY)
    assert answer.extra["backend"] == SLOTS
    monkeypatch.setenv(SLOTS_ENV, "0")
    with ChatModel.load(folder, model_id="smollm2") as model:
        assert isinstance(model._engine.scheduler, EngineScheduler)


def test_the_tiny_test_model_does_not_qualify(tiny_model_dir):
    """Position ids and no shared KV buffer: og's Engine serves it."""
    assert slot_graph(tiny_model_dir, _config(tiny_model_dir)) is None


def test_alone_the_answers_are_og_generators(slots, cold):
    for question in QUESTIONS:
        assert slots.complete_chat(chat(question), GREEDY).text == cold[question]


def test_staggered_arrivals_join_and_answer_as_alone(slots, cold):
    scheduler = slots._engine.scheduler
    scheduler.peak_rows = 0

    def late(index: int) -> str:
        time.sleep(0.15 * index)
        return "".join(d.text for d in slots.stream_chat(chat(QUESTIONS[index]), GREEDY))

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        answers = list(pool.map(late, range(len(QUESTIONS))))
    assert answers == [cold[q] for q in QUESTIONS]
    assert scheduler.peak_rows > 1  # later arrivals joined running streams


def test_a_cancelled_stream_frees_its_row_and_the_others_go_on(slots, cold):
    scheduler = slots._engine.scheduler
    cancel = threading.Event()
    long = GenerationParams(max_tokens=400, temperature=0)
    cancelled = slots.stream_chat(chat("Tell me a long story about a dragon."), long, cancel)
    first = next(iter(cancelled))  # streaming
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(lambda: slots.complete_chat(chat(QUESTIONS[1]), GREEDY).text)
        cancel.set()
        finish = [d.finish_reason for d in cancelled if d.finish_reason]
        assert other.result() == cold[QUESTIONS[1]]
    assert first.text and finish == ["cancelled"]
    assert not scheduler._active and scheduler._reading is None


def test_a_held_conversation_continues_as_a_cold_run(slots, reference):
    question = "What is the capital of France?"
    first = slots.complete_chat(chat(question), GREEDY)
    follow_up = [
        *chat(question),
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "And of Italy?"},
    ]
    assert slots._engine.scheduler.holds_prefix_of(slots.encode_chat(follow_up), 0)
    hot = slots.complete_chat(follow_up, GREEDY)
    assert hot.usage.cached_tokens > hot.usage.prompt_tokens // 2
    assert hot.text == reference.complete_chat(follow_up, GREEDY).text


def test_finish_reasons(slots):
    short = slots.complete_chat(chat(QUESTIONS[2]), GenerationParams(max_tokens=3, temperature=0))
    assert (short.finish_reason, short.usage.completion_tokens) == ("length", 3)
    whole = slots.complete_chat(chat(QUESTIONS[0]), GenerationParams(max_tokens=64, temperature=0))
    assert whole.finish_reason == "stop" and whole.text == "The capital of France is Paris."


def test_a_seeded_sampled_answer_repeats_itself(slots):
    params = GenerationParams(max_tokens=16, temperature=0.9, top_p=0.95, seed=11)
    first = slots.complete_chat(chat(QUESTIONS[1]), params)
    assert first.extra["backend"] == SLOTS
    assert slots.complete_chat(chat(QUESTIONS[1]), params).text == first.text


def test_a_grammar_runs_on_og_generator(slots):
    params = GenerationParams(max_tokens=24, temperature=0, response_format=ResponseFormat("json_object"))
    answer = slots.complete_chat(chat("A JSON object with a name."), params)
    assert answer.extra["backend"] == GENERATOR and answer.text.startswith("{")


def test_kv_growth_and_prompt_chunks_give_the_same_answers(slots, folder):
    """A cache that starts at 16 positions and grows while a second prompt is read 8 tokens at a time
    beside a running stream."""
    import onnxruntime_genai as og

    eos = slots._settings.eos
    prompts = [slots.encode_chat(chat(q)) for q in QUESTIONS[1:3]]
    og_model = og.Model(str(folder))
    expected = [[t for t in greedy_answer(og_model, ids, 40) if t not in eos] for ids in prompts]
    graph = slot_graph(folder, _config(folder))
    scheduler = SlotScheduler(graph, eos=eos, max_length=8192, threads=1, capacity=16, chunk=8)
    try:
        jobs = [Job(ids=ids, max_new=40, sampling=Sampling(do_sample=False)) for ids in prompts]
        scheduler.submit(jobs[0])
        first = jobs[0].events.get(timeout=120)
        scheduler.submit(jobs[1])
        answers = [[first[1]], []]
        for job, tokens in zip(jobs, answers, strict=True):
            while (event := job.events.get(timeout=120))[0] == "token":
                tokens.append(event[1])
            assert event[0] == "done"
        assert answers == expected
        assert min(len(ids) for ids in prompts) > 32 and scheduler._model.grown >= 2
        assert scheduler.peak_rows == 2
    finally:
        scheduler.close()


def _config(folder: Path) -> dict:
    from foundry_jupyter.engine.folder import read_config

    return read_config(folder)


@pytest.mark.parametrize(
    ("arch", "rope", "qualifies"), [("llama", "none", True), ("phi3", "longrope", False)]
)
def test_which_imports_qualify(tiny_gguf, converted, arch, rope, qualifies):
    """LongRoPE picks its factors by the mask width, the longest row's in a batch: og's Engine keeps it."""
    folder = converted(tiny_gguf("Q4_1", arch=arch, rope=rope), "int4")
    assert (slot_graph(folder, _config(folder)) is not None) == qualifies


def test_an_int4_prompt_is_read_by_the_prompt_graph_for_its_last_row(smollm2_gguf, converted):
    """The default int4 import carries `model.prompt.onnx`: the slot loop reads prompts with it (in
    chunks, fed `logits_from`, so only the last row's logits are made) and decodes with `model.onnx`."""
    from tests.gguf.ortrun import Decoder

    folder = converted(smollm2_gguf, "int4")
    graph = slot_graph(folder, _config(folder))
    assert graph is not None and graph.prompt_file == folder / "model.prompt.onnx"
    model = SlotModel(graph, rows=2, max_length=512, threads=1, capacity=16)
    assert model.has_logits_from and model.prompt_session is not model.session
    ids = list(range(100, 140))
    for start in range(0, len(ids), 16):  # in chunks, the cache growing from 16 positions
        chunk = ids[start : start + 16]
        last = model.prefill(1, chunk, start, want_logits=start + 16 >= len(ids), used=[0, start])
    expected = Decoder(folder, "model.prompt.onnx").logits(ids)[-1]
    np.testing.assert_allclose(last, expected, atol=1e-3)
    assert int(np.argmax(last)) == int(np.argmax(expected))
