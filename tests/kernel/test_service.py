"""The service backend: a real `jupyter server` with the extension starts a real kernel, and the magics
in that kernel talk to the server's Foundry API (one loaded copy of the model, in a server runner)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from foundry_jupyter.engine.testmodel import TINY_ID

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
TOKEN = "kernel-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port: int, runtime_dir: Path, process: subprocess.Popen[bytes], log: Path) -> None:
        self.port = port
        self.runtime_dir = runtime_dir
        self.process = process
        self.log = log
        self.url = f"http://127.0.0.1:{port}/"
        import httpx

        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"token {TOKEN}"}, timeout=30)

    def wait_ready(self, timeout_s: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter server exited: {self.log.read_text()[-3000:]}")
            try:
                if self.http.get("foundry/openai/status").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"jupyter server did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # orderly: kernels and model runners stop too
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def running_server(base: Path, cache: Path) -> Iterator[Server]:
    """A real `jupyter server` with the extension, on a free port, serving the models in `cache`."""
    runtime = base / "runtime"
    runtime.mkdir()
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FOUNDRY_JUPYTER_URL", "FOUNDRY_JUPYTER_TOKEN"))
    }
    env.update(
        FOUNDRY_JUPYTER_CACHE=str(cache),
        JUPYTER_RUNTIME_DIR=str(runtime),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),
        HF_HUB_OFFLINE="1",
    )
    log = base / "server.log"
    command = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={NOTEBOOKS}",
        "--ServerApp.jpserver_extensions={'foundry_jupyter': True}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    srv = Server(port, runtime, process, log)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def server(tiny_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("foundry_jupyter.server.app")
    base = tmp_path_factory.mktemp("jupyter-server")
    cache = base / "cache" / "models"
    shutil.copytree(tiny_cache_dir, cache)
    with running_server(base, cache) as srv:
        yield srv


class Kernel:
    """A kernel the server started, driven over its connection file with jupyter_client."""

    def __init__(self, server: Server) -> None:
        from jupyter_client import BlockingKernelClient

        answer = server.http.post("api/kernels", json={"name": "python3"})
        answer.raise_for_status()
        self.server = server
        self.id = answer.json()["id"]
        connection = server.runtime_dir / f"kernel-{self.id}.json"
        deadline = time.monotonic() + 30
        while not connection.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.client = BlockingKernelClient()
        self.client.load_connection_file(str(connection))
        # No heartbeat channel: a booting kernel's silent heartbeat would read as a dead kernel.
        # wait_for_ready then asks for kernel_info until the kernel answers (bounded).
        self.client.start_channels(hb=False)
        self.client.wait_for_ready(timeout=90)

    def run(self, code: str, timeout: float = 120) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        messages: list[dict[str, Any]] = []
        reply = self.client.execute_interactive(
            code, output_hook=messages.append, timeout=timeout, allow_stdin=False
        )
        return reply["content"], messages

    def close(self) -> None:
        self.client.stop_channels()
        self.server.http.delete(f"api/kernels/{self.id}")


@pytest.fixture(scope="module")
def kernel(server: Server) -> Iterator[Kernel]:
    k = Kernel(server)
    try:
        yield k
    finally:
        k.close()


def _of(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m["content"] for m in messages if m["header"]["msg_type"] == kind]


def _text(messages: list[dict[str, Any]]) -> str:
    # A kernel may send one printed line in several stream messages: join those as they came.
    printed = "".join(c.get("text", "") for c in _of(messages, "stream"))
    results = [c["data"].get("text/plain", "") for c in _of(messages, "execute_result")]
    return "\n".join([printed, *results])


def test_kernel_knows_the_service(kernel: Kernel, server: Server) -> None:
    reply, messages = kernel.run("import os; print(os.environ['FOUNDRY_JUPYTER_URL'])")
    assert reply["status"] == "ok"
    assert _text(messages).strip() == f"{server.url}foundry/"
    reply, messages = kernel.run("%load_ext foundry_jupyter\n%foundry status")
    assert reply["status"] == "ok"
    assert "server (chosen: auto)" in _text(messages)


def test_cells_stream_through_the_server(kernel: Kernel, server: Server) -> None:
    kernel.run("%config FoundryMagics.max_updates_per_s = 0")
    # 64 tokens: enough pieces that the display is seen growing even when the server merges tokens
    # that arrive together.
    reply, messages = kernel.run("%%foundry tiny --max-tokens 64\nHello through the server")
    assert reply["status"] == "ok", reply
    first = _of(messages, "display_data")
    updates = _of(messages, "update_display_data")
    assert len(first) == 1 and len(updates) >= 2
    display_id = first[0]["transient"]["display_id"]
    assert all(u["transient"]["display_id"] == display_id for u in updates)
    final = updates[-1]
    provenance = final["metadata"]["foundry"]
    assert provenance["backend"] == "server" and provenance["model"] == TINY_ID
    assert provenance["execution_provider"] == "cpu"
    assert 1 <= provenance["usage"]["completion_tokens"] <= 64

    # the server holds the one loaded copy, in its own runner process
    loaded = server.http.get("foundry/loaded").json()["models"]
    assert [m["id"] for m in loaded] == [TINY_ID]
    reply, messages = kernel.run("import os; print(os.getpid())")
    assert loaded[0]["pid"] != int(_text(messages))

    reply, messages = kernel.run("%%foundry --max-tokens 4\nAnd a second turn")
    assert reply["status"] == "ok"
    second = _of(messages, "update_display_data")[-1]["metadata"]["foundry"]
    assert second["usage"]["prompt_tokens"] > provenance["usage"]["total_tokens"]
    reply, messages = kernel.run("%foundry history --json")
    history = json.loads(_text(messages))
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]


def test_tables_and_errors_through_the_server(kernel: Kernel) -> None:
    code = (
        "import foundry_jupyter\n"
        "frame = foundry_jupyter.cache_table()\n"
        "print(frame['id'].tolist(), int(frame['size_bytes'].iloc[0]) > 0, frame['last_used'].dtype)\n"
        "print(foundry_jupyter.loaded_table()['id'].tolist())"
    )
    reply, messages = kernel.run(code)
    assert reply["status"] == "ok", reply
    text = _text(messages)
    assert f"['{TINY_ID}'] True datetime64[ns, UTC]" in text
    assert f"['{TINY_ID}']" in text.splitlines()[-1]

    reply, messages = kernel.run("%foundry load no-such-model")
    assert reply["status"] == "error"
    shown = "\n".join(reply.get("traceback", []) + [c.get("text", "") for c in _of(messages, "stream")])
    assert "no-such-model" in shown and "Traceback" not in shown

    reply, messages = kernel.run("%foundry bogus")
    assert reply["status"] == "error"
    assert "unknown command" in _text(messages) and "Traceback" not in _text(messages)


@pytest.mark.parametrize("name", ["01-quick-start.ipynb", "02-openai-sdk.ipynb"])
def test_notebook_runs_in_a_server_kernel(server: Server, name: str) -> None:
    import nbformat

    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    k = Kernel(server)
    chats = []
    try:
        for cell in book.cells:
            if cell.cell_type != "code":
                continue
            reply, messages = k.run(cell.source)
            assert reply["status"] == "ok", (cell.source, reply.get("traceback"))
            assert not _of(messages, "error")
            shown = _of(messages, "display_data") + _of(messages, "update_display_data")
            finals = {m["transient"]["display_id"]: m["metadata"] for m in shown if m["metadata"]}
            chats += [metadata["foundry"] for metadata in finals.values()]
        if name.startswith("01"):
            assert len(chats) == 3 and {c["backend"] for c in chats} == {"server"}
        else:
            reply, messages = k.run(
                "print(text != '', usage.completion_tokens, reply.usage.completion_tokens)"
            )
            assert _text(messages).split()[0] == "True"
    finally:
        k.close()


def test_widgets_drive_the_server(kernel: Kernel, server: Server) -> None:
    code = (
        "from foundry_jupyter.kernel.widgets import ChatWidget, ModelPicker\n"
        "session = get_ipython().magics_manager.registry['FoundryMagics'].session\n"
        "p = ModelPicker(session)\n"
        f"p.choice.value = '{TINY_ID}'\n"
        "states = []\n"
        "def state():\n"
        "    r = p.selected()\n"
        "    states.append((r['cached'], r['loaded']))\n"
        "p.unload_button.click(); state()\n"
        "p.remove_button.click(); state()\n"
        "p.download_button.click(); state()\n"
        "p.load_button.click(); state()\n"
        "p.use_button.click()  # removing the active model above cleared it\n"
        "print(states)\n"
        "chat = ChatWidget(session)\n"
        "chat.defaults = chat.defaults.__class__(max_tokens=4)\n"
        "chat.input.value = 'hi from the widget'\n"
        "chat.send_button.click(); chat.wait(60)\n"
        "print(chat.last_result.backend, chat.last_result.model, chat.status.value)\n"
    )
    reply, messages = kernel.run(code)
    assert reply["status"] == "ok", reply.get("traceback")
    lines = _text(messages).strip().splitlines()
    assert lines[0] == "[(True, False), (False, False), (True, False), (True, True)]"
    assert lines[1].startswith(f"server {TINY_ID}")
    assert [m["id"] for m in server.http.get("foundry/loaded").json()["models"]] == [TINY_ID]
    downloads = server.http.get("foundry/downloads").json()["downloads"]
    assert any(d["state"] == "done" for d in downloads)  # the picker's download went through the server
