"""The stored responses' bounds, on a clock the test moves: no server, no model."""

from __future__ import annotations

import pytest

from foundry_jupyter.errors import InvalidRequest
from foundry_jupyter.service.response_store import ResponseNotFound, ResponseStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def response(response_id: str, text: str = "answer") -> dict:
    message = {
        "id": f"msg_{response_id}",
        "type": "message",
        "role": "assistant",
        "content": [{"text": text}],
    }
    return {"id": response_id, "object": "response", "output": [message]}


def test_least_recently_used_goes_first():
    store = ResponseStore(max_entries=2, max_age_s=0)
    store.put(response("a"), ())
    store.put(response("b"), ())
    store.get("a")
    store.put(response("c"), ())
    assert store.find("b") is None and store.find("a") is not None and len(store) == 2
    store.previous("a")  # chaining counts as use
    store.put(response("d"), ())
    assert store.find("c") is None and {store.get("a").id, store.get("d").id} == {"a", "d"}


def test_an_entry_expires_its_age_after_it_was_stored_however_often_it_is_read():
    clock = Clock()
    store = ResponseStore(max_entries=0, max_age_s=60, clock=clock)
    store.put(response("a"), ())
    clock.now += 30
    store.put(response("b"), ())
    clock.now += 29
    assert store.get("a").id == "a"
    clock.now += 1
    with pytest.raises(ResponseNotFound) as info:
        store.get("a")
    assert info.value.status == 404 and "'a'" in info.value.message
    assert len(store) == 1
    clock.now += 30
    assert len(store) == 0


def test_missing_ids_answer_404_and_a_missing_previous_response_400():
    store = ResponseStore()
    with pytest.raises(ResponseNotFound):
        store.delete("nope")
    with pytest.raises(InvalidRequest) as info:
        store.previous("nope")
    assert info.value.code == "previous_response_not_found" and info.value.param == "previous_response_id"
    store.put(response("a"), ())
    assert store.delete("a").id == "a"
    with pytest.raises(ResponseNotFound):
        store.get("a")


def test_a_conversation_is_the_input_then_the_output_and_survives_its_predecessor():
    store = ResponseStore(max_entries=1, max_age_s=0)
    question = {"id": "msg_q", "type": "message", "role": "user", "content": [{"text": "hi"}]}
    first = store.put(response("a", "one"), (question,))
    follow = {"id": "msg_f", "type": "message", "role": "user", "content": [{"text": "more"}]}
    store.put(response("b", "two"), (*first.conversation(), follow))
    assert store.find("a") is None
    assert [item["id"] for item in store.get("b").conversation()] == ["msg_q", "msg_a", "msg_f", "msg_b"]
