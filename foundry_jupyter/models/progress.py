"""What long model operations report and how they are stopped: progress reports and cancellation.

A leaf module (it imports nothing from `models`), so downloads, the PyPI source, the GGUF converter
and `ModelManager` can all name these types without importing one another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import Cancelled


@dataclass(frozen=True)
class DownloadProgress:
    """One progress report: the whole model's bytes, and which file is moving now."""

    file: str
    bytes_done: int
    bytes_total: int
    percent: float
    speed_bps: float
    file_bytes_done: int = 0
    file_bytes_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "bytesDone": self.bytes_done,
            "bytesTotal": self.bytes_total,
            "percent": self.percent,
            "speedBps": self.speed_bps,
        }


ProgressCallback = Callable[[DownloadProgress], None]
StageCallback = Callable[[str], None]  # one short line per stage of a conversion


@runtime_checkable
class CancelEvent(Protocol):
    """What `threading.Event` offers for cancellation."""

    def is_set(self) -> bool: ...


# A threading.Event (or anything with `is_set()`), or a callable answering True once cancelled.
Cancel = CancelEvent | Callable[[], bool]


def is_cancelled(cancel: Cancel | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, CancelEvent):
        return bool(cancel.is_set())
    return bool(cancel())


def check_cancelled(cancel: Cancel | None, message: str) -> None:
    """Raise `Cancelled(message)` once `cancel` says so."""
    if is_cancelled(cancel):
        raise Cancelled(message)
