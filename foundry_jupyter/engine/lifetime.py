"""Closing what holds og state at interpreter exit: og aborts the process when an Engine is still alive
as Python finalizes, so every model and engine thread is closed first, even one whose owner forgot it."""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from typing import Protocol


class Closable(Protocol):
    def close(self) -> None: ...


_OPEN: weakref.WeakSet[Closable] = weakref.WeakSet()
_LOCK = threading.Lock()


def close_at_exit(obj: Closable) -> None:
    """Close `obj` at interpreter exit unless it is gone by then (closing twice must be harmless)."""
    with _LOCK:
        if not _OPEN:
            # Registered (again) now, so that it runs before the exit handlers of the modules imported
            # since, onnxruntime_genai included (atexit runs the last registered first).
            atexit.unregister(_close_all)
            atexit.register(_close_all)
        _OPEN.add(obj)


def _close_all() -> None:
    with _LOCK:
        open_now = list(_OPEN)
    for obj in open_now:
        with contextlib.suppress(Exception):  # exiting anyway: close the others
            obj.close()
