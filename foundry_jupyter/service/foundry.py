"""Foundry Local management semantics (`openai/*`, `foundry/list`) and the extras the sidebar uses.

Shapes follow Foundry Local's service; where its answers were wrong or unhelpful (an alias rejected
where an id works, a bare 500 for a model not downloaded) these do better and say so in the message.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from ..errors import InvalidRequest
from ..models import view
from .core import FoundryService

PIPE_NAME = "foundry-jupyter"  # Foundry Local names its named pipe here; clients only display it


def status(service: FoundryService, endpoint: str) -> dict[str, Any]:
    """`GET openai/status`: PascalCase as documented, camelCase as the real service sends."""
    cache = str(service.cache_root())
    return {
        "Endpoints": [endpoint],
        "ModelDirPath": cache,
        "PipeName": PIPE_NAME,
        "endpoints": [endpoint],
        "modelDirPath": cache,
        "modelCachePath": cache,
        "pipeName": PIPE_NAME,
        "pid": os.getpid(),
        "loadedModels": [r.model_id for r in service.supervisor.loaded()],
    }


async def catalog_list(service: FoundryService) -> list[dict[str, Any]]:
    """`GET foundry/list`: a bare array of catalog entries, best variant of each alias first."""
    local = await asyncio.to_thread(view.catalog_rows, await service.manager())
    return [*local, *await service.remote.catalog_rows()]


async def resolve(service: FoundryService, name: str) -> dict[str, Any]:
    """`GET foundry/resolve/{name}`: the catalog variant an alias or id stands for on this machine."""
    if (row := await service.remote.row(name)) is not None:
        return row
    return await asyncio.to_thread(view.resolved_row, await service.manager(), name)


async def cached_ids(service: FoundryService) -> list[str]:
    """`GET openai/models`: ids of the cached models."""
    return [m.id for m in await service.run("list_cached")]


async def load(service: FoundryService, name: str, *, ttl: int | None, ep: str | None) -> dict[str, Any]:
    """`GET openai/load/{name}`: start the model's runner (or refresh its TTL)."""
    if (answer := await service.remote.lifecycle_answer(name, "load")) is not None:
        return answer
    entry, path = await service.cached(name)
    runner, started = await service.supervisor.ensure(
        entry.id, path, alias=entry.alias, ttl=ttl, ep=ep or service.settings.execution_provider
    )
    return {
        "status": "loaded" if started else "already_loaded",
        "id": runner.model_id,
        "executionProvider": runner.execution_provider,
        "ttlSeconds": runner.ttl_s,
    }


async def unload(service: FoundryService, name: str, *, force: bool) -> dict[str, Any]:
    """`GET openai/unload/{name}`: `not_loaded` for a known model that is not loaded, 404 if unknown."""
    if (answer := await service.remote.lifecycle_answer(name, "unload")) is not None:
        return answer
    runner = service.loaded_runner(name)
    if runner is None:
        entry = await service.resolve(name)
        return {"status": "not_loaded", "id": entry.id}
    await service.supervisor.unload(runner.model_id, force=force)
    return {"status": "unloaded", "id": runner.model_id}


async def unload_all(service: FoundryService) -> dict[str, Any]:
    return {"status": "unloaded", "models": await service.supervisor.unload_all()}


def loaded_ids(service: FoundryService) -> list[str]:
    return [r.model_id for r in service.supervisor.loaded()]


def loaded_details(service: FoundryService) -> dict[str, Any]:
    """`GET loaded`: what `service ps` and the sidebar show."""
    now = time.monotonic()
    models = [
        view.loaded_row(
            runner.model_id,
            runner.alias,
            runner.execution_provider,
            pids=runner.pids,
            memory_bytes=runner.memory_bytes(),
            ttl_seconds=runner.ttl_s,
            ttl_remaining=runner.ttl_remaining(now),
            starting_processes=len(runner.growing),
            active_requests=runner.active,
        )
        for runner in service.supervisor.loaded()
    ]
    return {"models": models}


# ---- downloads ------------------------------------------------------------------------------
async def download_lines(service: FoundryService, name: str) -> AsyncIterator[str]:
    """`POST openai/download` body lines: `Total NN.NN% Downloading <file>`, `[DONE]`, then the result."""
    import json

    job = await service.downloads.start(name)
    queue = service.downloads.listen(job)
    last = None
    try:
        while True:
            line = f"Total {job.percent:.2f}% Downloading {job.file or job.model}"
            if line != last and job.state in ("running", "done"):
                yield line
                last = line
            if job.state != "running":
                break
            await queue.get()
    finally:
        job.listeners.discard(queue)
    yield "[DONE]"
    yield json.dumps({"success": job.state == "done", "errorMessage": job.error})


# ---- cache and hardware -------------------------------------------------------------------
async def cache_listing(service: FoundryService) -> dict[str, Any]:
    listing = await asyncio.to_thread(view.cache_listing, await service.manager())
    listing["models"] += await service.remote.cache_rows()
    return listing


async def cache_remove(service: FoundryService, name: str) -> dict[str, Any]:
    """`DELETE cache/{name}`: unload (forcefully) and delete a cached model."""
    if not name.strip():
        raise InvalidRequest("Name the model to remove.", param="name")
    await service.refuse_remote(name)
    entry_id = name
    runner = service.loaded_runner(name)
    if runner is not None:
        entry_id = runner.model_id
        await service.supervisor.unload(runner.model_id, force=True)
    removed = await service.run("remove", entry_id)
    return {"removed": removed.id}


async def hardware(service: FoundryService) -> dict[str, Any]:
    from ..engine.hardware import hardware_report

    return (await asyncio.to_thread(hardware_report)).to_dict()


# ---- remote engines -------------------------------------------------------------------------
async def engines(service: FoundryService) -> dict[str, Any]:
    """`GET engines`: each remote engine with its health, latency and model count (never its key)."""
    return {"engines": await service.remote.engine_rows()}


async def register_engine(service: FoundryService, body: Any) -> dict[str, Any]:
    """`POST openai/register`: Foundry's `{TypeName, ModelName, BaseUri}`, or an engine object."""
    return await service.remote.register(body)  # a small file write; the listing is asked for later


async def remove_engine(service: FoundryService, name: str) -> dict[str, Any]:
    """`DELETE engines/{name}`: `{status: removed, engine}`; a configured engine is a 400."""
    return service.remote.remove(name)
