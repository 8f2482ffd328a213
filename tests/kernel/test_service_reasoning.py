"""A reasoning model's thinking through the server: a real `jupyter server` starts a real kernel, whose
`%%foundry` cell reads `reasoning_content` from the server's chat stream and folds it above the answer."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.reasoning import OPENS_THINKING, with_template

from .test_service import Kernel, Server, _of, running_server

THINKS = "tiny-think-generic-cpu:1"


@pytest.fixture(scope="module")
def server(
    tiny_cache_dir: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    pytest.importorskip("foundry_jupyter.server.app")
    base = tmp_path_factory.mktemp("jupyter-server-reasoning")
    cache = base / "cache" / "models"
    shutil.copytree(tiny_cache_dir, cache)
    folder = with_template(
        tiny_model_dir, cache / "foundry-jupyter" / "tiny-think-generic-cpu-1", OPENS_THINKING
    )
    (folder / "inference_model.json").write_text(json.dumps({"Name": THINKS}))
    with running_server(base, cache) as srv:
        yield srv


def test_thinking_streams_folded_through_the_server(server: Server) -> None:
    kernel = Kernel(server)
    try:
        kernel.run("%load_ext foundry_jupyter\n%config FoundryMagics.max_updates_per_s = 0")
        reply, messages = kernel.run(f"%%foundry {THINKS} -n 16 -t 0\nWhy is the sky blue?")
        assert reply["status"] == "ok", reply
        shown = [*_of(messages, "display_data"), *_of(messages, "update_display_data")]
        assert len(shown) >= 2
        final = shown[-1]
        assert final["metadata"]["foundry"]["backend"] == "server"
        assert final["data"]["text/markdown"].startswith("<details><summary>thinking</summary>\n\n")
        assert final["data"]["text/plain"].startswith("[thinking]\n")
        # The same answer from the server's REST route: its reasoning_content is what the cell folded.
        body = {"model": THINKS, "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
        answer = server.http.post(
            "foundry/v1/chat/completions", json={**body, "max_tokens": 16, "temperature": 0}
        ).json()
        thought = answer["choices"][0]["message"]["reasoning_content"]
        assert final["data"]["text/plain"] == f"[thinking]\n{thought}\n[/thinking]\n"
        # The history keeps the answer only: none, since the budget ran out while it thought.
        code = "from foundry_jupyter.kernel.api import current_session\n"
        code += "print(repr(current_session().conversation.messages[-1]))"
        reply, messages = kernel.run(code)
        assert _of(messages, "stream")[0]["text"].strip() == repr({"role": "assistant", "content": ""})
    finally:
        kernel.close()
