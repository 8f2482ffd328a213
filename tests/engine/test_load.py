"""EngineLoad without a model: which requests claim an idle model for og.Generator, in milliseconds."""

from __future__ import annotations

import threading

from foundry_jupyter.engine.load import EngineLoad


def idle_load(*, solo_wait_s: float = 0.0, max_batch: int = 2) -> EngineLoad:
    return EngineLoad(gather_s=0.01, solo_wait_s=solo_wait_s, max_batch=max_batch)


def test_a_lone_request_claims_an_idle_model_until_it_releases_it() -> None:
    load = idle_load()
    claim = load.claim_idle()
    assert claim is not None
    assert load.claim_idle() is None  # the lone stream counts as load: the next one batches
    claim.release()
    claim.release()  # twice is harmless
    again = load.claim_idle()
    assert again is not None
    again.release()


def test_engine_jobs_send_arrivals_to_the_engine_until_the_batch_is_full() -> None:
    load = idle_load(max_batch=2)
    load.job_submitted()
    assert load.claim_idle() is None
    load.job_submitted()
    beside = load.claim_idle()  # a full batch: og.Generator runs beside it
    assert beside is not None
    beside.release()
    load.job_finished()
    load.job_finished()
    alone = load.claim_idle()
    assert alone is not None
    alone.release()


def test_company_within_the_wait_sends_both_to_the_engine() -> None:
    load = idle_load(solo_wait_s=5.0)
    results: list[object] = []
    waiting = threading.Thread(target=lambda: results.append(load.claim_idle()))
    waiting.start()
    while load._candidate is None:  # the first request is waiting for company
        threading.Event().wait(0.001)
    load.job_submitted()  # the second arrives: the first gives up its claim
    waiting.join(timeout=5)
    assert results == [None]


def test_a_tracked_stream_releases_its_claim_when_closed_unstarted() -> None:
    load = idle_load()
    claim = load.claim_idle()
    assert claim is not None

    def tokens():
        yield "a"

    stream = claim.track(tokens())
    stream.close()  # type: ignore[attr-defined]
    assert load.claim_idle() is not None
