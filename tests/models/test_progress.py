"""One cancellation check for downloads, the PyPI source and conversions."""

from __future__ import annotations

import threading

import pytest

from foundry_jupyter.errors import Cancelled
from foundry_jupyter.models.progress import DownloadProgress, check_cancelled, is_cancelled


def test_events_callables_and_none_all_cancel() -> None:
    event = threading.Event()
    assert not is_cancelled(None)
    assert not is_cancelled(event) and not is_cancelled(lambda: False)
    event.set()
    assert is_cancelled(event) and is_cancelled(lambda: True)


def test_check_cancelled_raises_with_the_message() -> None:
    check_cancelled(None, "unused")
    with pytest.raises(Cancelled, match="Download of x cancelled"):
        check_cancelled(lambda: True, "Download of x cancelled")


def test_progress_reports_keep_their_json_shape() -> None:
    report = DownloadProgress("a.onnx", 5, 10, 50.0, 2.5, file_bytes_done=5, file_bytes_total=10)
    assert report.to_dict() == {
        "file": "a.onnx",
        "bytesDone": 5,
        "bytesTotal": 10,
        "percent": 50.0,
        "speedBps": 2.5,
    }
