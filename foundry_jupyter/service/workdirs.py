"""Runner work folders (socket and log), named after the server process that made them, so that a
server started after one that was killed (SIGKILL, OOM, power loss: no cleanup ran) removes them."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

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
            if path.stat().st_uid != os.getuid() or not path.is_dir() or path.is_symlink():
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %s runner folder(s) left by servers that were killed", len(removed))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True
