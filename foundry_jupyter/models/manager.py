"""`ModelManager`: the catalog, the cache, downloads, registrations and GGUF imports behind one object.

What the service, the kernel and the CLI use to turn a name (alias, `name:version`, `name`, or a
model folder path) into a catalog entry and a folder on disk, and to add models under an alias.
"""

from __future__ import annotations

import difflib
import re
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..config import Settings
from ..errors import InvalidRequest, ModelNotCached, ModelNotFound, ProviderUnavailable
from . import download as _download
from .cache import (
    EMBEDDING_CONFIG,
    GENAI_CONFIG,
    CachedModel,
    ModelCache,
    describe,
    folder_context_length,
    folder_size,
    is_model_folder,
    read_marker,
    read_runtime,
)
from .catalog import EMBEDDINGS_TASK, Catalog, CatalogEntry, LocalSource, Runtime, priority_key
from .engines import EngineFile, engine_aliases
from .location import effective_cache_dir, save_cache_dir
from .progress import Cancel, ProgressCallback, StageCallback
from .providers import short_provider, usable_providers
from .registry import Registry, check_alias

IMPORT_PUBLISHER = "local"  # the cache folder imported models live under


def default_gguf_alias(gguf_path: str | Path) -> str:
    """`SmolLM2-135M-Instruct.Q4_1.gguf` -> `smollm2-135m-instruct-q4_1`."""
    stem = Path(gguf_path).name.removesuffix(".gguf")
    slug = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")
    return slug or "imported-model"


class ModelManager:
    def __init__(
        self,
        settings: Settings,
        *,
        providers: Sequence[str] | None = None,
        endpoint: str | None = None,
        token: str | None = None,
    ) -> None:
        """`providers` overrides the machine's usable providers (short names, best first)."""
        self.settings = settings
        self.cache = ModelCache(effective_cache_dir(settings))
        self.registry = Registry(settings.registry_file)
        self._providers = [short_provider(p) for p in providers] if providers is not None else None
        self.endpoint = endpoint
        self.token = token
        self._catalog: Catalog | None = None

    # -- catalog
    @property
    def catalog(self) -> Catalog:
        """Shipped + user catalogs + registered models (built once; `refresh()` rebuilds it)."""
        if self._catalog is None:
            self._catalog = Catalog.load(self.settings.catalog_files, self.registry.entries())
        return self._catalog

    def refresh(self) -> None:
        self._catalog = None

    def usable_providers(self) -> list[str]:
        if self._providers is None:
            self._providers = usable_providers()
        preferred = self.settings.execution_provider
        if preferred:
            short = short_provider(preferred)
            return [short, *(p for p in self._providers if p != short)]
        return list(self._providers)

    def entries(self) -> list[CatalogEntry]:
        """Every known variant, catalog models first in priority order, then cached models it lacks."""
        entries = self.catalog.sorted(self.usable_providers())
        known = {e.id.lower() for e in entries}
        entries.extend(e for e in self._uncatalogued() if e.id.lower() not in known)
        return entries

    def _uncatalogued(self) -> list[CatalogEntry]:
        """Cached models no catalog names (copied in by hand, imported): usable by id and alias too."""
        extra = []
        for model in self.cache.scan():
            if self.catalog.get(model.id) is not None:
                continue
            name, _, version = model.id.rpartition(":")
            try:
                extra.append(
                    CatalogEntry(
                        name=name,
                        version=int(version) if version.isdigit() else 0,
                        alias=model.alias,
                        publisher=model.publisher or "local",
                        runtime=Runtime(
                            device_type=model.device, execution_provider=model.execution_provider
                        ),
                        file_size_mb=max(1, round(model.size_bytes / 2**20)),
                        provider_type="Local",
                        task=EMBEDDINGS_TASK
                        if (model.path / EMBEDDING_CONFIG).is_file()
                        else "chat-completion",
                        context_length=folder_context_length(model.path),
                        source=LocalSource(path=str(model.path)),
                    )
                )
            except ValueError:
                continue  # a name our catalog cannot express; still listed by the cache views
        return extra

    # -- resolution
    def resolve(self, name: str) -> CatalogEntry:
        """An alias, a full id (`name:version`), a model name (highest version) or a model folder path.

        For an alias: a cached variant first; else NPU > GPU > CPU among the providers this machine
        can use (CUDA before other GPU providers), then the highest version.
        """
        name = (name or "").strip()
        if not name:
            raise InvalidRequest("No model given")
        folder = self._as_folder(name)
        if folder is not None:
            return folder
        usable = self.usable_providers()
        cached = {m.id.lower() for m in self.cache.scan()}
        entries = self.entries()
        by_id = {e.id.lower(): e for e in entries}
        if (entry := by_id.get(name.lower())) is not None:
            return entry
        lowered = name.lower()
        versions = [e for e in entries if e.name.lower() == lowered]
        variants = versions or [e for e in entries if e.alias.lower() == lowered]
        if not variants:
            raise ModelNotFound(self._unknown_message(name, entries), param="model")

        def key(entry: CatalogEntry) -> tuple:
            return priority_key(entry, usable)

        runnable = [e for e in variants if e.provider in usable]
        # A variant on disk wins, as long as this machine can run it (a cached CUDA build is no use
        # on a machine without CUDA).
        local = [e for e in runnable if e.id.lower() in cached or isinstance(e.source, LocalSource)]
        if local:
            return min(local, key=key)
        if not runnable:
            needs = ", ".join(sorted({e.execution_provider for e in variants}))
            raise ProviderUnavailable(
                f"No variant of {name} runs on this machine: it needs {needs}, and this machine can use "
                f"{', '.join(usable)}"
            )
        preferred = self.settings.execution_provider
        if preferred:  # FOUNDRY_JUPYTER_EP: that provider's variant when there is one
            chosen = [e for e in runnable if e.provider == short_provider(preferred)]
            runnable = chosen or runnable
        return min(runnable, key=key)

    def _as_folder(self, name: str) -> CatalogEntry | None:
        looks_like_path = "/" in name or "\\" in name or name.startswith((".", "~"))
        path = Path(name).expanduser()
        if not looks_like_path or not path.is_dir():
            return None
        if not (path / GENAI_CONFIG).is_file():
            raise InvalidRequest(f"{path} is not an ONNX GenAI model folder: it has no {GENAI_CONFIG}")
        path = path.resolve()
        device, provider = read_runtime(path)
        slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.name).strip("-.") or "model"
        return CatalogEntry(
            name=slug,
            version=1,
            alias=slug,
            publisher="local",
            runtime=Runtime(device_type=device, execution_provider=provider),
            file_size_mb=max(1, round(folder_size(path) / 2**20)),
            provider_type="Local",
            source=LocalSource(path=str(path)),
        )

    def _unknown_message(self, name: str, entries: list[CatalogEntry]) -> str:
        names = sorted({e.alias for e in entries} | {e.id for e in entries})
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return f"Unknown model {name!r}.{hint} `jupyter foundry model list` shows the catalog."

    # -- local files
    def is_cached(self, entry: CatalogEntry) -> bool:
        if isinstance(entry.source, LocalSource):
            return is_model_folder(Path(entry.source.path))
        return self.cache.find(entry.id) is not None

    def local_path(self, name: str) -> Path | None:
        """The folder to load for `name`, or None while it is not downloaded."""
        entry = self.resolve(name)
        if isinstance(entry.source, LocalSource):
            path = Path(entry.source.path)
            return path if is_model_folder(path) else None
        found = self.cache.find(entry.id)
        return found.path if found else None

    def require_local(self, name: str) -> CachedModel:
        """The cached model for `name`, or ModelNotCached saying how to download it."""
        entry = self.resolve(name)
        found = self._local_model(entry)
        if found is None:
            raise ModelNotCached(
                f"{entry.id} is not downloaded yet: run `jupyter foundry model download {entry.alias}`",
                param="model",
            )
        return found

    def _local_model(self, entry: CatalogEntry) -> CachedModel | None:
        if isinstance(entry.source, LocalSource):
            path = Path(entry.source.path)
            if not is_model_folder(path):
                return None
            marker = read_marker(path) or {}
            registered = self.registry_entry(entry.id) is not None
            return describe(
                path,
                {
                    **marker,
                    "Name": entry.id,
                    "Alias": entry.alias,
                    "Publisher": entry.publisher,
                    "Runtime": {"deviceType": entry.device, "executionProvider": entry.execution_provider},
                },
                registered=registered or not _inside(path, self.cache.root),
            )
        return self.cache.find(entry.id)

    def registry_entry(self, name: str) -> CatalogEntry | None:
        key = name.lower()
        return next((e for e in self.registry.entries() if key in (e.id.lower(), e.alias.lower())), None)

    # -- downloads
    def ensure(
        self,
        name: str,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
        force: bool = False,
    ) -> CachedModel:
        """The model on disk, downloading or building it first when needed; marks it used."""
        entry = self.resolve(name)
        if isinstance(entry.source, LocalSource):
            found = self._existing_folder(entry, entry.source)
            if not found.registered:  # a model copied into the cache by hand
                self.cache.touch(found.id)
            return found
        found = None if force else self.cache.find(entry.id)
        if found is None:
            found = self._fetch(entry, force=force, progress=progress, cancel=cancel)
        self.cache.touch(found.id)
        return found

    def download(
        self,
        name: str,
        force: bool = False,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> CachedModel:
        entry = self.resolve(name)
        if isinstance(entry.source, LocalSource):
            return self._existing_folder(entry, entry.source)
        return self._fetch(entry, force=force, progress=progress, cancel=cancel)

    def _existing_folder(self, entry: CatalogEntry, source: LocalSource) -> CachedModel:
        """A model whose folder is its source (registered, or copied in): nothing to fetch."""
        found = self._local_model(entry)
        if found is None:
            raise ModelNotFound(f"The folder of {entry.id} is gone: {source.path}")
        return found

    def _fetch(
        self,
        entry: CatalogEntry,
        *,
        force: bool,
        progress: ProgressCallback | None,
        cancel: Cancel | None,
    ) -> CachedModel:
        return _download.download(
            entry,
            self.cache,
            progress=progress,
            cancel=cancel,
            force=force,
            endpoint=self.endpoint,
            token=self.token,
        )

    # -- cache views and changes
    def list_cached(self) -> list[CachedModel]:
        """Models in the cache plus registered folders, with aliases from the catalog where known."""
        models = []
        for model in self.cache.scan():
            entry = self.catalog.get(model.id)
            if entry is not None and model.alias != entry.alias:
                model = replace(model, alias=entry.alias)
            models.append(model)
        seen = {m.id.lower() for m in models}
        for entry in self.registry.entries():
            found = self._local_model(entry)
            if found is not None and found.id.lower() not in seen:
                models.append(found)
        return sorted(models, key=lambda m: (m.alias.lower(), m.id.lower()))

    def register(self, folder: Path | str, alias: str) -> CatalogEntry:
        """Register a local ONNX GenAI folder under `alias` (no copy is made)."""
        self._claim_alias(alias)
        entry = self.registry.add(Path(folder), alias)
        self.refresh()
        return entry

    def import_gguf(
        self,
        gguf_path: str | Path,
        *,
        alias: str | None = None,
        precision: str | None = None,
        progress: StageCallback | None = None,
    ) -> CachedModel:
        """Convert a GGUF file into the cache as `<alias>-<precision>-generic-cpu:1`; returns it.

        `alias` defaults to one made from the file name, `precision` to the converter's default. The
        model then answers to `alias` like any cached model. An earlier import under the same alias
        and precision is replaced once the new one is whole.
        """
        from .gguf import DEFAULT_PRECISION, import_gguf  # the converter loads numpy: only when used

        alias = alias or default_gguf_alias(gguf_path)
        self._claim_alias(alias)
        precision = precision or DEFAULT_PRECISION
        model_id = f"{alias}-{precision}-generic-cpu:1"
        staging = self.cache.staging_dir(model_id, IMPORT_PUBLISHER)
        shutil.rmtree(staging, ignore_errors=True)
        try:
            import_gguf(gguf_path, staging, precision=precision, progress=progress)
            model = self.cache.install(
                staging,
                model_id,
                IMPORT_PUBLISHER,
                alias=alias,
                device="CPU",
                execution_provider="CPUExecutionProvider",
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.refresh()
        return model

    def _claim_alias(self, alias: str) -> None:
        """Refuse a malformed alias, or one a catalog model answers to (it would shadow the new model)."""
        check_alias(alias)
        taken = {alias.lower(), f"{alias}:1".lower()}
        clash = [
            e
            for e in self.catalog
            if not isinstance(e.source, LocalSource) and taken & {e.alias.lower(), e.id.lower()}
        ]
        if clash:
            raise InvalidRequest(
                f"The alias {alias!r} belongs to the catalog model {clash[0].id}", param="alias"
            )
        engine = engine_aliases(self.settings.remote_engines, EngineFile(self.settings.engines_file))
        if alias.lower() in engine:
            raise InvalidRequest(
                f"The alias {alias!r} belongs to a model of the remote engine '{engine[alias.lower()]}'",
                param="alias",
                code="alias_conflict",
            )

    def remove(self, name: str) -> CachedModel:
        """Delete a cached model, or forget a registration (its folder is left alone)."""
        registered = self.registry_entry(name)
        if registered is not None:
            found = self._local_model(registered)
            self.registry.remove(registered.id)
            self.refresh()
            return found or CachedModel(
                id=registered.id,
                alias=registered.alias,
                path=Path(registered.source.path),  # type: ignore[union-attr]
                size_bytes=0,
                device=registered.device,
                execution_provider=registered.execution_provider,
                registered=True,
            )
        if self.cache.find(name) is not None:
            return self.cache.remove(name)
        entry = self.resolve(name)
        cached = [e for e in self.entries() if e.alias == entry.alias and self.cache.find(e.id)]
        target = entry if self.cache.find(entry.id) else (cached[0] if cached else None)
        if target is None:
            raise ModelNotFound(f"{name} is not in the cache at {self.cache.root}")
        return self.cache.remove(target.id)

    def move_cache(self, new_root: Path | str) -> Path:
        """Move every cached model to `new_root` and use it from now on (see `location`)."""
        new = self.cache.move(Path(new_root))
        save_cache_dir(self.settings, new)
        return new


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False
