"""No runner outlives the server that started it: a thread watches the parent from the runner's
first moments, while the model loads as well as while it serves.

When the parent is gone the runner gets SIGTERM from itself: while loading, that ends the process
(no handler is installed yet); while serving, it stops the server as the supervisor's SIGTERM does.
If that graceful stop hangs, the process exits hard after a grace period. The parent is polled,
not asked for a death signal (Linux's PR_SET_PDEATHSIG): that signal follows the thread that
started the runner, not the server process, and exists on Linux only.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import psutil

from ..service.processes import parent_gone

log = logging.getLogger("foundry_jupyter.runner")

POLL_S = 1.0
GRACE_S = 10.0  # for the graceful stop (generations end at their next token) before a hard exit


def watch_parent(parent_pid: int | None, *, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> None:
    """Start the watch on `parent_pid` (None: no watch) in a daemon thread."""
    if not parent_pid:
        return
    try:
        parent = psutil.Process(parent_pid)
    except psutil.Error:
        parent = None  # gone already: the watch stops this process at once
    thread = threading.Thread(
        target=_watch, args=(parent_pid, parent, poll_s, grace_s), name="parent-watch", daemon=True
    )
    thread.start()


def _watch(parent_pid: int, parent: psutil.Process | None, poll_s: float, grace_s: float) -> None:
    while parent is not None and not parent_gone(parent):
        time.sleep(poll_s)
    log.warning("parent process %s is gone; stopping", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)  # Windows: TerminateProcess, which ends it at once
    time.sleep(grace_s)
    log.error("the graceful stop took longer than %s s; exiting now", grace_s)
    os._exit(1)
