"""Background download jobs: start, watch progress, cancel.

A job runs `ModelManager.ensure` in a worker thread; its progress callback hops back onto the event
loop, updates the job record and wakes the listeners (the `openai/download` progress stream, the
sidebar polling `GET downloads`). Two requests for the same model share one job.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import Cancelled, FoundryError, InvalidRequest

if TYPE_CHECKING:
    from .core import FoundryService

log = logging.getLogger("foundry_jupyter.service")

State = Literal["running", "done", "failed", "cancelled"]
NOTIFY_INTERVAL_S = 0.1  # progress events per job are throttled to about 10 per second
KEEP_FINISHED = 50  # finished jobs listed before the oldest are dropped


class DownloadNotFound(FoundryError):
    status = 404
    code = "download_not_found"


@dataclass
class DownloadJob:
    id: str
    model: str
    state: State = "running"
    percent: float = 0.0
    bytes_done: int = 0
    bytes_total: int = 0
    speed_bps: float = 0.0
    file: str = ""
    error: str | None = None
    error_code: str | None = None
    started: float = field(default_factory=time.time)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    listeners: set[asyncio.Queue[None]] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _last_notify: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "state": self.state,
            "percent": round(self.percent, 2),
            "bytesDone": self.bytes_done,
            "bytesTotal": self.bytes_total,
            "speedBps": self.speed_bps,
            "file": self.file,
            "error": self.error,
        }

    def _notify(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_notify < NOTIFY_INTERVAL_S:
            return
        self._last_notify = now
        for queue in list(self.listeners):
            queue.put_nowait(None)

    def update(self, progress: Any) -> None:
        file_changed = progress.file != self.file
        self.file = progress.file
        self.bytes_done = progress.bytes_done
        self.bytes_total = progress.bytes_total
        self.percent = float(progress.percent)
        self.speed_bps = float(progress.speed_bps)
        self._notify(force=file_changed)

    def finish(self, state: State, error: FoundryError | None = None) -> None:
        self.state = state
        if state == "done":
            self.percent = 100.0
            self.bytes_done = max(self.bytes_done, self.bytes_total)
        if error is not None:
            self.error, self.error_code = error.message, error.code
        self.done.set()
        self._notify(force=True)


class DownloadJobs:
    def __init__(self, service: FoundryService) -> None:
        self._service = service
        self.jobs: dict[str, DownloadJob] = {}

    def list(self) -> list[DownloadJob]:
        return list(self.jobs.values())

    def get(self, job_id: str) -> DownloadJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise DownloadNotFound(f"No download with id '{job_id}'; GET foundry/downloads lists them.")
        return job

    async def start(self, name: str) -> DownloadJob:
        """Start downloading `name` (alias or id), or join the running download of the same model."""
        if not name or not name.strip():
            raise InvalidRequest("`model` must name a model", param="model")
        entry = await self._service.resolve(name.strip())
        for job in self.jobs.values():
            if job.model == entry.id and job.state == "running":
                return job
        job = DownloadJob(id="dl-" + secrets.token_hex(6), model=entry.id)
        self.jobs[job.id] = job
        self._trim()
        asyncio.get_running_loop().create_task(self._run(job))
        return job

    def cancel(self, job_id: str) -> DownloadJob:
        job = self.get(job_id)
        if job.state == "running":
            job.cancel_event.set()
        return job

    def cancel_all(self) -> None:
        for job in self.jobs.values():
            job.cancel_event.set()

    async def _run(self, job: DownloadJob) -> None:
        loop = asyncio.get_running_loop()

        def progress(report: Any) -> None:
            loop.call_soon_threadsafe(job.update, report)

        try:
            await self._service.run("ensure", job.model, progress=progress, cancel=job.cancel_event)
        except Cancelled as exc:
            job.finish("cancelled", exc)
        except FoundryError as exc:
            job.finish("cancelled" if job.cancel_event.is_set() else "failed", exc)
        except Exception as exc:
            log.exception("download %s of %s failed", job.id, job.model)
            job.finish("failed", FoundryError(f"Download failed: {type(exc).__name__}: {exc}"))
        else:
            job.finish("done")

    def _trim(self) -> None:
        finished = [j for j in self.jobs.values() if j.state != "running"]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self.jobs[job.id]

    def listen(self, job: DownloadJob) -> asyncio.Queue[None]:
        queue: asyncio.Queue[None] = asyncio.Queue()
        job.listeners.add(queue)
        return queue
