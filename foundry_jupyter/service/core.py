"""`FoundryService`: the state the REST routes share (settings, model manager, runners, downloads).

The model manager does file-system work (cache scan, catalog files), so it is built in a worker
thread on first use and every call into it goes through `run()`: the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, TypeVar

from ..config import Settings
from ..errors import FoundryError, InvalidRequest, ModelNotCached, ModelNotFound
from ..models import view
from ..models.engines import EngineFile
from .downloads import DownloadJobs
from .remote import RemoteEngines
from .response_store import ResponseStore
from .runners import Runner, RunnerSupervisor

log = logging.getLogger("foundry_jupyter.service")

T = TypeVar("T")


class FoundryService:
    def __init__(
        self,
        settings: Settings,
        *,
        supervisor: RunnerSupervisor | None = None,
        responses: ResponseStore | None = None,
    ) -> None:
        self.settings = settings
        self.supervisor = supervisor or RunnerSupervisor(
            max_loaded=settings.max_loaded_models, default_ttl_s=settings.ttl_s
        )
        self._manager: Any = None
        self._manager_future: asyncio.Future[Any] | None = None
        self.downloads = DownloadJobs(self)
        self.remote = RemoteEngines(
            settings.remote_engines, EngineFile(settings.engines_file), is_local=self.is_local
        )
        self.started_at = time.time()
        self.responses = ResponseStore() if responses is None else responses  # v1/responses answers

    # ---- the model manager, off the event loop -------------------------------------------
    def warm_up(self) -> None:
        """Start building the manager (cache scan, catalog) in the background."""
        self._manager_task()

    def _manager_task(self) -> asyncio.Future[Any]:
        if self._manager_future is None or (self._manager_future.done() and self._manager_future.exception()):
            loop = asyncio.get_running_loop()
            self._manager_future = loop.run_in_executor(None, _build_manager, self.settings)
        return self._manager_future

    async def manager(self) -> Any:
        if self._manager is None:
            self._manager = await asyncio.shield(self._manager_task())
        return self._manager

    async def run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call `manager.<method>(*args, **kwargs)` in a worker thread."""
        manager = await self.manager()
        return await asyncio.to_thread(getattr(manager, method), *args, **kwargs)

    def cache_root(self) -> Path:
        """The cache folder in use (the manager may have moved it from the configured one)."""
        return self._manager.cache.root if self._manager is not None else Path(self.settings.cache_dir)

    # ---- names -> models ---------------------------------------------------------------
    def loaded_runner(self, name: str) -> Runner | None:
        """The runner serving `name` (a full id or an alias), without touching the catalog."""
        model_id = view.loaded_id(name, {r.model_id: r.alias for r in self.supervisor.loaded()})
        return None if model_id is None else self.supervisor.get(model_id)

    async def resolve(self, name: str) -> Any:
        """The catalog entry for an alias or id; raises ModelNotFound (404)."""
        await self.refuse_remote(name)
        return await self.run("resolve", name)

    async def is_local(self, name: str) -> bool:
        """Whether a local model (catalog, cache or registered folder) answers to `name`."""
        try:
            await self.run("resolve", name)
        except ModelNotFound:
            return False
        except FoundryError:
            return True  # known here, but not usable as asked (its provider, say)
        return True

    async def cached(self, name: str) -> tuple[Any, Path]:
        """(entry, model folder) of a model that is in the cache; raises when it is not."""
        entry = await self.resolve(name)
        path = await self.run("local_path", entry.id)
        if path is None:
            raise ModelNotCached(
                f"Model '{entry.id}' is in the catalog but not downloaded. Download it first: "
                f'POST foundry/openai/download {{"model": "{entry.id}"}}, or '
                f"`jupyter foundry model download {entry.alias}`.",
                param="model",
            )
        return entry, Path(path)

    async def runner_for(self, name: str, *, ttl: int | None = None, ep: str | None = None) -> Runner:
        """The runner serving `name`, loading the model when it is cached but not loaded."""
        runner = self.loaded_runner(name)
        if runner is not None and not ep:
            if ttl is not None:
                runner.ttl_s = ttl
            return runner
        entry, path = await self.cached(name)
        runner, _ = await self.supervisor.ensure(
            entry.id, path, alias=entry.alias, ttl=ttl, ep=ep or self.settings.execution_provider
        )
        return runner

    async def refuse_remote(self, name: str) -> None:
        """A remote engine's model has no files and no runner here: say so instead of 'not found'."""
        hit = await self.remote.find(name)
        if hit is not None:
            raise InvalidRequest(
                f"{name} is a model of the remote engine '{hit.engine.name}': it has no files or runner "
                "here, so there is nothing to download, load or count with; chat, completions, responses and "
                "embeddings go to the engine.",
                param="model",
                code="remote_model",
            )

    async def close(self) -> None:
        self.downloads.cancel_all()
        await self.supervisor.stop()
        await self.remote.close()


def _build_manager(settings: Settings) -> Any:
    from ..models.manager import ModelManager

    return ModelManager(settings)
