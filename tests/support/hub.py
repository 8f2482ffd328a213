"""A Hugging Face Hub imitation on 127.0.0.1, enough for huggingface_hub's download paths.

    with HubServer({"org/model-onnx": folder}) as hub:
        HfApi(endpoint=hub.url).model_info("org/model-onnx")

Serves, for each repo (a local folder, walked recursively):
- `GET /api/models/{repo}/revision/{rev}`: `{"id", "sha", "siblings"}`;
- `GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=true`: files with `oid` (git blob sha1) and,
  above `lfs_threshold` bytes, `lfs: {oid: sha256, size, pointerSize}`;
- `HEAD`/`GET /{repo}/resolve/{rev}/{path}` with `X-Repo-Commit`, a quoted `ETag`, `Content-Length`,
  and `206` + `Content-Range` for `Range: bytes=N-[M]`.
Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`) so the
library raises its own exceptions.

Knobs for failure tests: `cut(path, after)` drops the connection after `after` bytes of the next
transfer(s) of a file; `corrupt(path)` serves different bytes of the same size; `hide(path)` lists
a file but answers 404 for it; `slow(path, delay_s)` paces a file's transfer; `gate(repo)` makes a
repo gated; `require_token` answers 401 without `Authorization: Bearer <token>`. Every request is
logged in `requests` as (method, path, Range header or None), and `bytes_sent[path]` counts body
bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

_SEND_BLOCK = 16 * 1024


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class _Cut:
    after: int
    times: int


@dataclass
class _Repo:
    folder: Path
    sha: str
    files: dict[str, bytes] = field(default_factory=dict)


class HubServer:
    def __init__(
        self,
        repos: dict[str, Path],
        *,
        lfs_threshold: int = 10_000,
        require_token: str | None = None,
    ) -> None:
        self.repos: dict[str, _Repo] = {}
        for repo_id, folder in repos.items():
            files = {
                p.relative_to(folder).as_posix(): p.read_bytes()
                for p in sorted(Path(folder).rglob("*"))
                if p.is_file()
            }
            sha = hashlib.sha1(repo_id.encode() + b"".join(files.values()), usedforsecurity=False).hexdigest()
            self.repos[repo_id] = _Repo(Path(folder), sha, files)
        self.lfs_threshold = lfs_threshold
        self.require_token = require_token
        self.requests: list[tuple[str, str, str | None]] = []
        self.bytes_sent: dict[str, int] = {}
        self._cuts: dict[str, _Cut] = {}
        self._corrupt: set[str] = set()
        self._gated: set[str] = set()
        self._hidden: set[str] = set()
        self._delays: dict[str, float] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- knobs
    def cut(self, path: str, after: int, times: int = 1) -> None:
        """Drop the connection after `after` body bytes of the next `times` transfers of `path`."""
        self._cuts[path] = _Cut(after, times)

    def corrupt(self, path: str) -> None:
        """Serve `path` with its first bytes changed (same size, so only a hash check notices)."""
        self._corrupt.add(path)

    def gate(self, repo_id: str) -> None:
        self._gated.add(repo_id)

    def slow(self, path: str, delay_s: float) -> None:
        """Pause `delay_s` after each 16 KiB block of `path` (0 to stop), to catch a transfer midway."""
        self._delays[path] = delay_s

    def hide(self, path: str) -> None:
        """Keep `path` in the tree listing but answer 404 when it is fetched."""
        self._hidden.add(path)

    def ranges(self, path: str) -> list[str | None]:
        """The Range headers of every GET of a file (None for a whole-file request)."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + path) and "/resolve/" in p]

    # -- lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first (use it as a context manager)"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- data
    def tree(self, repo: _Repo, prefix: str, recursive: bool) -> list[dict[str, Any]] | None:
        prefix = prefix.strip("/")
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        matched = not prefix
        for path, data in repo.files.items():
            if prefix and not path.startswith(prefix + "/"):
                continue
            matched = True
            rest = path[len(prefix) + 1 :] if prefix else path
            parts = rest.split("/")
            if not recursive and len(parts) > 1:
                folders.add(f"{prefix}/{parts[0]}" if prefix else parts[0])
                continue
            for i in range(1, len(parts)):
                sub = "/".join(parts[:i])
                folders.add(f"{prefix}/{sub}" if prefix else sub)
            entries.append(self.file_entry(path, data))
        if not matched:
            return None
        dirs = [
            {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in folders
        ]
        return sorted(dirs, key=lambda d: d["path"]) + entries

    def file_entry(self, path: str, data: bytes) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha1(data)}
        if len(data) >= self.lfs_threshold:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: HubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # -- routing
    def _serve(self, head: bool) -> None:
        hub = self.server_hub
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        with hub._lock:
            hub.requests.append((self.command, path, self.headers.get("Range")))
        if hub.require_token and self.headers.get("Authorization") != f"Bearer {hub.require_token}":
            return self._error(401, "RepoNotFound", "Invalid credentials", head)
        segments = path.strip("/").split("/")
        if segments[:2] == ["api", "models"] and len(segments) >= 5:
            repo_id = "/".join(segments[2:4])
            kind, rev, rest = segments[4], segments[5] if len(segments) > 5 else "", segments[6:]
            repo = self._repo(repo_id, rev, head)
            if repo is None:
                return None
            if kind == "revision":
                body = {"id": repo_id, "sha": repo.sha, "siblings": [{"rfilename": p} for p in repo.files]}
                return self._json(body, head)
            if kind == "tree":
                recursive = "recursive=true" in (parts.query or "").lower()
                tree = hub.tree(repo, "/".join(rest), recursive)
                if tree is None:
                    return self._error(404, "EntryNotFound", "Entry not found", head)
                return self._json(tree, head)
            return self._error(404, None, "Not found", head)
        if len(segments) >= 5 and segments[2] == "resolve":
            repo_id = "/".join(segments[:2])
            repo = self._repo(repo_id, segments[3], head)
            if repo is None:
                return None
            return self._file(repo, "/".join(segments[4:]), head)
        return self._error(404, None, "Not found", head)

    def _repo(self, repo_id: str, rev: str, head: bool) -> _Repo | None:
        hub = self.server_hub
        repo = hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", head)
            return None
        if repo_id in hub._gated:
            self._error(403, "GatedRepo", "Access to this gated repo is restricted", head)
            return None
        if rev not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", "Invalid rev id", head)
            return None
        return repo

    # -- answers
    def _file(self, repo: _Repo, path: str, head: bool) -> None:
        hub = self.server_hub
        data = repo.files.get(path)
        if data is None or path in hub._hidden:
            return self._error(404, "EntryNotFound", "Entry not found", head)
        entry = hub.file_entry(path, data)
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        if path in hub._corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:] if data else data
        start, end = 0, len(data) - 1
        status = 200
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            first, _, last = range_header[len("bytes=") :].partition("-")
            start = int(first or 0)
            end = min(int(last), len(data) - 1) if last else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            status = 206
        body = data[start : end + 1]
        self.send_response(status)
        self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if head:
            return None
        limit = len(body)
        with hub._lock:
            cut = hub._cuts.get(path)
            if cut is not None and cut.times > 0:
                cut.times -= 1
                limit = max(0, min(limit, cut.after - start))
        sent = 0
        try:
            while sent < limit:
                block = body[sent : min(limit, sent + _SEND_BLOCK)]
                self.wfile.write(block)
                sent += len(block)
                if hub._delays.get(path):
                    self.wfile.flush()
                    time.sleep(hub._delays[path])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        with hub._lock:
            hub.bytes_sent[path] = hub.bytes_sent.get(path, 0) + sent
        if limit < len(body):  # the cut: end the connection mid-body
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        return None

    def _json(self, body: Any, head: bool) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _error(self, status: int, code: str | None, message: str, head: bool) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)
