"""Runner work folders (socket and log), named after the server process that made them, so that a
server started after one that was killed (SIGKILL, OOM, power loss: no cleanup ran) removes them."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import psutil

log = logging.getLogger("foundry_jupyter.service")

PREFIX = "fj-runner-"
_OWNED = re.compile(rf"{PREFIX}(\d+)-")


def make_workdir() -> str:
    """A fresh private folder for one runner process of this server."""
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")


def remove_dead_workdirs(root: Path | None = None) -> list[Path]:
    """Remove the runner folders of server processes that no longer exist (ours only; a folder whose
    server pid is alive, or that names no pid, is left alone)."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(PREFIX + "*"):
        match = _OWNED.match(path.name)
        if match is None or _alive(int(match[1])):
            continue
        try:
            if not path.is_dir() or path.is_symlink() or not _ours(path):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %s runner folder(s) left by servers that were killed", len(removed))
    return removed


def _alive(pid: int) -> bool:
    # psutil, not os.kill(pid, 0): on Windows os.kill terminates the process whatever the signal
    return pid == os.getpid() or psutil.pid_exists(pid)


def _ours(path: Path) -> bool:
    """Made by this user (POSIX; on Windows the temp folder is the user's own)."""
    if hasattr(os, "getuid"):
        return path.stat().st_uid == os.getuid()
    return True
