"""Real engines behind the server, on loopback: a second foundry-jupyter server and Foundry Local's own
web service (the benchmark's peer venv), each registered as an engine and driven with the real
`openai` client through our URL."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import openai
import psutil
import pytest

from benchmarks import peer

from .conftest import TINY

MSG = [{"role": "user", "content": "Tell me a story."}]
PARAMS = {"messages": MSG, "max_tokens": 8, "temperature": 0}
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SecondServer:
    """`jupyter server` with the extension in its own process, serving a copy of the tiny cache."""

    def __init__(
        self, workdir: Path, cache: Path, extra_args: tuple[str, ...] = (), enable_in_config: bool = False
    ) -> None:
        self.extra_args = extra_args
        self.enable_in_config = enable_in_config  # else on the command line
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.workdir = workdir
        self.cache = cache
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/foundry/v1"

    def start(self, timeout_s: float = 90.0) -> SecondServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRY_JUPYTER_")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
            JUPYTER_CONFIG_DIR=str(self.workdir / "config"),
            JUPYTER_RUNTIME_DIR=str(self.workdir / "runtime"),
            JUPYTER_DATA_DIR=str(self.workdir / "data"),
            FOUNDRY_JUPYTER_CACHE=str(self.cache),
        )
        cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={self.port}"]
        cmd += [
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
        ]
        if not self.enable_in_config:
            cmd.append("--ServerApp.jpserver_extensions={'foundry_jupyter': True}")
        cmd += [f"--ServerApp.root_dir={self.workdir}", *self.extra_args]
        log = (self.workdir / "server.log").open("wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                answer = httpx.get(f"{self.url}/models", headers={"Authorization": f"Bearer {self.token}"})
                if answer.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"the second server did not start: {(self.workdir / 'server.log').read_text()[-2000:]}"
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        _gone, alive = psutil.wait_procs(children, timeout=10)
        for proc in alive:
            proc.kill()


@pytest.fixture
def second_server(tmp_path: Path, tiny_cache_dir: Path):
    with _second_server(tmp_path, tiny_cache_dir) as server:
        yield server


@contextmanager
def _second_server(
    tmp_path: Path, tiny_cache_dir: Path, *, models: tuple[str, ...] = ()
) -> Iterator[SecondServer]:
    """A started SecondServer on a copy of the tiny cache, with `models` (built-in ones) added to it."""
    from foundry_jupyter.config import defaults
    from foundry_jupyter.models.manager import ModelManager

    cache = tmp_path / "second" / "cache" / "models"
    shutil.copytree(tiny_cache_dir, cache)
    for model in models:
        ModelManager(defaults({"FOUNDRY_JUPYTER_CACHE": str(cache)})).ensure(model)
    server = SecondServer(tmp_path / "second", cache).start()
    try:
        yield server
    finally:
        server.stop()


async def _register(http, server: SecondServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registers `server` as the engine `lab2`, its token in the environment."""
    monkeypatch.setenv("SECOND_SERVER_TOKEN", server.token)
    body = {"name": "lab2", "baseUrl": server.url, "apiKeyEnv": "SECOND_SERVER_TOKEN"}
    assert (await http.post("openai/register", json=body)).status_code == 200


async def test_a_second_foundry_jupyter_server_as_an_engine(http, client, second_server, monkeypatch):
    await _register(http, second_server, monkeypatch)

    ids = [m.id for m in (await client.models.list()).data]
    assert TINY in ids and f"lab2/{TINY}" in ids
    engines = (await http.get("engines")).json()["engines"]
    assert engines[0]["health"] == "ok" and second_server.token not in str(engines)

    local = await client.chat.completions.create(model=TINY, **PARAMS)
    remote = await client.chat.completions.create(model=f"lab2/{TINY}", **PARAMS)
    assert remote.model == f"lab2/{TINY}"
    assert remote.choices[0].message.content == local.choices[0].message.content  # the same tiny model
    assert remote.usage.completion_tokens == local.usage.completion_tokens

    stream = await client.chat.completions.create(
        model="lab2/tiny", stream=True, stream_options={"include_usage": True}, **PARAMS
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        local.choices[0].message.content
    )
    assert chunks[-1].usage.completion_tokens == local.usage.completion_tokens

    text = await client.completions.create(model=f"lab2/{TINY}", prompt="Once", max_tokens=4, temperature=0)
    assert text.model == f"lab2/{TINY}" and text.usage.completion_tokens <= 4

    with pytest.raises(openai.NotFoundError) as info:  # the engine's 404, passed on
        await client.chat.completions.create(model="lab2/nope-model:1", **PARAMS)
    assert info.value.body["code"] == "model_not_found" and "'lab2'" in info.value.body["message"]


@pytest.fixture
def embedding_server(tmp_path: Path, tiny_cache_dir: Path):
    """A second server whose cache also holds the built-in random BERT, `random-embed`."""
    with _second_server(tmp_path, tiny_cache_dir, models=("random-embed",)) as server:
        yield server


async def test_embeddings_from_a_second_server(http, client, embedding_server, monkeypatch):
    await _register(http, embedding_server, monkeypatch)
    texts = ["hello world", "the cat and the dog went to the river"]

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {embedding_server.token}"}) as direct:
        answer = await direct.post(f"{embedding_server.url}/embeddings", json={"model": "random-embed",
                                                                               "input": texts})  # fmt: skip
    expected = answer.json()
    # Left out, the openai client asks for base64 and decodes it itself.
    for encoding in ({"encoding_format": "float"}, {}):
        through = await client.embeddings.create(model="lab2/random-embed", input=texts, **encoding)
        assert through.model == "lab2/random-embed"
        np.testing.assert_allclose(
            [d.embedding for d in through.data], [d["embedding"] for d in expected["data"]], atol=1e-6
        )
        assert through.usage.prompt_tokens == expected["usage"]["prompt_tokens"]

    chat_model = await http.post("v1/embeddings", json={"model": f"lab2/{TINY}", "input": "hi"})
    assert chat_model.status_code == 400 and "'lab2'" in chat_model.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="lab2/no-such-model:1", input="hi")


PEER_MISSING = peer.peer_available()


@pytest.mark.skipif(bool(PEER_MISSING), reason=f"Foundry Local peer unavailable: {PEER_MISSING}")
async def test_foundry_local_registered_with_its_own_register_body(
    http, client, tiny_model_dir, tmp_path, monkeypatch
):
    # pytest-jupyter puts this interpreter's whole sys.path into PYTHONPATH; the peer venv pins other
    # onnxruntime libraries and must not see ours.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    service = peer.PeerProcess(tiny_model_dir, "tiny-peer:1", _free_port(), tmp_path / "peer").start()
    try:
        body = {"TypeName": "fl", "ModelName": "tiny-peer:1", "BaseUri": service.base_url}
        assert (await http.post("openai/register", json=body)).status_code == 200
        catalog = {row["id"]: row for row in (await http.get("foundry/list")).json()}
        assert catalog["fl/tiny-peer:1"]["health"] == "ok"

        whole = await client.chat.completions.create(model="fl/tiny-peer:1", **PARAMS)
        assert whole.model == "fl/tiny-peer:1" and whole.usage.completion_tokens > 0
        stream = await client.chat.completions.create(model="fl/tiny-peer:1", stream=True, **PARAMS)
        chunks = [c async for c in stream]
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == whole.choices[0].message.content
        assert {c.model for c in chunks} == {"fl/tiny-peer:1"}
    finally:
        service.stop()
    down = await http.post("v1/chat/completions", json={"model": "fl/tiny-peer:1", **PARAMS})
    assert down.status_code == 503 and "'fl'" in down.json()["error"]["message"]
