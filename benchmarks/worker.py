"""A benchmark worker process driven by JSON lines: one job a line on its stdin, one answer a line on
its stdout (the raw og loop and llama.cpp run this way, each alone in its process)."""

from __future__ import annotations

import json
import subprocess
from typing import Any, Self


class JsonLineWorker:
    """The driver's side: `start()` (in a subclass) sets `proc`; `call` sends a job and reads its answer."""

    label = "worker"

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Self:
        raise NotImplementedError

    def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label} exited with {self.proc.wait()}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def call(self, op: str, **job: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **job}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def stop(self) -> None:
        """Close its stdin (the worker's cue to exit), then wait, killing it if it does not go."""
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
