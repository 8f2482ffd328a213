"""What the service, the kernel and the CLI show about models, built one way for all of them.

Catalog rows are `/foundry/list` entries with `cached` set, cache listings are `GET cache`'s
`{location, models}`, loaded rows are `GET loaded`'s entries, and `loaded_id` says which loaded model
a name means. Each function takes the `ModelManager` it reads. Remote engines' models get rows of the
same shapes, with device "remote", the engine, its health and latency (`remote_*`, `engine_row`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.fim import read_fim_tokens
from ..engine.folder import chat_template
from ..engine.reasoning import template_reasons
from .catalog import CatalogEntry, filter_entries, filter_predicate
from .engines import DEVICE, EngineConfig, EngineListing, public_url
from .manager import ModelManager


def catalog(manager: ModelManager, expression: str | None = None) -> list[tuple[CatalogEntry, bool]]:
    """(entry, cached) for every variant, best first; `expression` is `model list --filter`'s."""
    return _catalog(manager, expression, _cached_folders(manager))


def _catalog(
    manager: ModelManager, expression: str | None, folders: Mapping[str, CachedFolder]
) -> list[tuple[CatalogEntry, bool]]:
    entries = _reasoning_from_templates(filter_entries(manager.entries(), expression), folders)
    return [(e, e.id.lower() in folders) for e in entries]


@dataclass(frozen=True)
class CachedFolder:
    """What a cached model's tokenizer files say it can do: only known once the model is here."""

    id: str
    fim: bool  # the tokenizer declares fill-in-the-middle tokens
    reasons: bool  # the chat template thinks in `<think>` blocks


def _cached_folders(manager: ModelManager) -> dict[str, CachedFolder]:
    """The cached models by lower-cased id, with what their tokenizer files say: one read of a folder
    serves every capability, and later listings while the files are unchanged."""
    return {m.id.lower(): _cached_folder(m.id, Path(m.path)) for m in manager.list_cached()}


_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "chat_template.jinja")


def _cached_folder(model_id: str, path: Path) -> CachedFolder:
    files = [path / name for name in _TOKENIZER_FILES]
    return _read_folder(model_id, str(path), tuple(f.stat().st_mtime_ns if f.is_file() else 0 for f in files))


@functools.lru_cache(maxsize=256)
def _read_folder(model_id: str, folder: str, _stamps: tuple[int, ...]) -> CachedFolder:
    path = Path(folder)
    return CachedFolder(
        id=model_id,
        fim=read_fim_tokens(path) is not None,
        reasons=template_reasons(chat_template(path)),
    )


def _reasoning_from_templates(
    entries: list[CatalogEntry], folders: Mapping[str, CachedFolder]
) -> list[CatalogEntry]:
    """Entries whose cached folder's chat template thinks in `<think>` blocks are marked as reasoning,
    whatever their catalog entry says."""
    out = []
    for entry in entries:
        folder = folders.get(entry.id.lower())
        if not entry.supports_reasoning and folder is not None and folder.reasons:
            entry = entry.model_copy(update={"supports_reasoning": True})
        out.append(entry)
    return out


def catalog_rows(manager: ModelManager, expression: str | None = None) -> list[dict[str, Any]]:
    """`GET foundry/list`: the catalog in Foundry's field names, each entry with `cached`."""
    folders = _cached_folders(manager)
    rows = []
    for entry, cached in _catalog(manager, expression, folders):
        row = entry.to_foundry(cached=cached)
        row["capabilities"] = capabilities(entry, folders)
        rows.append(row)
    return rows


def capabilities(entry: CatalogEntry, folders: Mapping[str, CachedFolder]) -> list[str]:
    """The entry's capabilities, with `fim` when `v1/completions` takes a `suffix` for it."""
    folder = folders.get(entry.id.lower())
    has_fim = folder is not None and folder.fim and folder.id == entry.id
    return [*entry.capabilities, "fim"] if has_fim else entry.capabilities


def resolved_row(manager: ModelManager, name: str) -> dict[str, Any]:
    """`GET foundry/resolve/{name}`: the variant an alias or id stands for on this machine, with `cached`."""
    entry = manager.resolve(name)
    return entry.to_foundry(cached=manager.is_cached(entry))


def model_metadata(manager: ModelManager) -> dict[str, dict[str, Any]]:
    """`{id: {context_length, max_output_tokens, capabilities, task}}` for every known model (what
    `GET v1/models` adds to OpenAI's model objects)."""
    folders = _cached_folders(manager)
    return {
        e.id: {
            "context_length": e.context_length,
            "max_output_tokens": e.max_output_tokens,
            "capabilities": capabilities(e, folders),
            "task": e.task,
        }
        for e in _reasoning_from_templates(manager.entries(), folders)
    }


def cache_listing(manager: ModelManager) -> dict[str, Any]:
    """`GET cache`: where the cache is and what it holds (registered folders included)."""
    return {"location": str(manager.cache.root), "models": [m.to_dict() for m in manager.list_cached()]}


def loaded_row(
    model_id: str,
    alias: str,
    execution_provider: str,
    *,
    pids: Sequence[int],
    memory_bytes: int | None = None,
    ttl_seconds: int | None = None,
    ttl_remaining: float | None = None,
    starting_processes: int = 0,
    active_requests: int | None = None,
) -> dict[str, Any]:
    """One entry of `GET loaded`. None stands for what the host does not track (the kernel has no TTL)."""
    return {
        "id": model_id,
        "alias": alias,
        "executionProvider": execution_provider,
        "memoryBytes": memory_bytes,
        "ttlSeconds": ttl_seconds,
        "ttlRemaining": None if ttl_remaining is None else round(ttl_remaining, 1),
        "pid": pids[0] if pids else None,
        "pids": list(pids),
        "startingProcesses": starting_processes,
        "activeRequests": active_requests,
    }


def loaded_id(
    name: str, loaded: Mapping[str, str], resolve: Callable[[str], str | None] | None = None
) -> str | None:
    """Which loaded model `name` means, given loaded `{id: alias}`; None when none of them.

    In order: the id itself; the id in another case or without its `:version` (ids are `name:version`
    and a name may hold `:`, so the version is what follows the last one); the id `resolve(name)`
    gives (the catalog's choice among an alias's variants); a model loaded under that alias.
    """
    if name in loaded:
        return name
    wanted = name.strip().lower()
    for model_id in loaded:
        if wanted in (model_id.lower(), (model_id.rpartition(":")[0] or model_id).lower()):
            return model_id
    if resolve is not None and (chosen := resolve(name)) in loaded:
        return chosen
    return next((model_id for model_id, alias in loaded.items() if alias.lower() == wanted), None)


# ---- remote engines ---------------------------------------------------------------------------
def remote_catalog_rows(engine: EngineConfig, listing: EngineListing) -> list[dict[str, Any]]:
    """`/foundry/list` entries for an engine's models, named `ENGINE/MODEL`, device "remote".

    `cached` is true: a remote model needs no download, and a client that offers one for uncached rows
    must not offer it here."""
    rows = []
    for model in listing.models:
        model_id = f"{engine.name}/{model['id']}"
        rows.append(
            {
                "id": model_id,
                "name": model_id,
                "displayName": str(model["id"]),
                "modelType": "remote",
                "providerType": "OpenAICompatible",
                "uri": public_url(engine.api_base),
                "version": "",
                "promptTemplate": None,
                "publisher": engine.name,
                "task": "chat-completion",
                "runtime": {"deviceType": DEVICE, "executionProvider": engine.name},
                "fileSizeMb": None,
                "alias": engine.display_name(str(model["id"])),
                "supportsToolCalling": None,
                "license": None,
                "maxOutputTokens": None,
                "contextLength": model.get("max_model_len") or model.get("context_length"),
                "cached": True,
                **_remote_fields(listing),
            }
        )
    return rows


def remote_cache_rows(engine: EngineConfig, listing: EngineListing) -> list[dict[str, Any]]:
    """`GET cache` models for an engine: nothing on disk, so no size and no path."""
    return [
        {
            "id": f"{engine.name}/{model['id']}",
            "alias": engine.display_name(str(model["id"])),
            "device": DEVICE,
            "executionProvider": engine.name,
            "sizeBytes": None,
            "path": None,
            "lastUsed": None,
            "publisher": engine.name,
            "registered": False,
            **_remote_fields(listing),
        }
        for model in listing.models
    ]


def remote_model_objects(engine: EngineConfig, listing: EngineListing, created: int) -> list[dict[str, Any]]:
    """`GET v1/models` objects for an engine's models."""
    return [
        {
            "id": f"{engine.name}/{model['id']}",
            "object": "model",
            "created": int(model.get("created") or created),
            "owned_by": engine.name,
            "alias": engine.display_name(str(model["id"])),
            "loaded": False,
            **_remote_fields(listing),
        }
        for model in listing.models
    ]


def remote_matches(row: Mapping[str, Any], expression: str | None) -> bool:
    """Whether a remote catalog row passes `model list --filter` (device is "remote", provider the
    engine's name, alias its alias or `ENGINE/MODEL`)."""
    if not expression:
        return True
    return filter_predicate(expression)(
        {
            "device": [DEVICE],
            "provider": [row["engine"]],
            "task": [row["task"], *row["task"].split("-")],
            "alias": [row["alias"], row["id"]],
        }
    )


def engine_row(engine: EngineConfig, listing: EngineListing) -> dict[str, Any]:
    """One engine as `GET engines`, `engine list` and the sidebar show it (never its key)."""
    row = {**engine.public(), **_remote_fields(listing)}
    return {**row, "error": listing.error, "modelCount": len(listing.models)}


def _remote_fields(listing: EngineListing) -> dict[str, Any]:
    return {
        "remote": True,
        "engine": listing.engine,
        "health": listing.health,
        "latencyMs": listing.latency_ms,
    }
