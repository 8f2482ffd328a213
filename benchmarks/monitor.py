"""Peak resident memory of each system's processes, sampled in a background thread."""

from __future__ import annotations

import contextlib
import threading

import psutil


class MemoryMonitor:
    """Samples RSS every `interval_s`: a root process and, apart, all of its descendants (runners)."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.roots: dict[str, int] = {}
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-monitor", daemon=True)

    def watch(self, label: str, pid: int) -> None:
        self.roots[label] = pid
        self._sample()

    def _sample(self) -> None:
        for label, pid in list(self.roots.items()):
            try:
                root = psutil.Process(pid)
                self._peak(label, root.memory_info().rss)
                children = root.children(recursive=True)
                if children:
                    total = 0
                    for child in children:
                        with contextlib.suppress(psutil.Error):
                            total += child.memory_info().rss
                    self._peak(f"{label} runners", total)
            except psutil.Error:
                continue

    def _peak(self, label: str, rss: int) -> None:
        self.peaks[label] = max(self.peaks.get(label, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> MemoryMonitor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peaks_mb(self) -> dict[str, float]:
        return {label: rss / 2**20 for label, rss in sorted(self.peaks.items())}
