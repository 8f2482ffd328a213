"""Remote engines from a kernel without a server: `ENGINE/MODEL` answered by the engine directly.

The kernel-resident backend reads the same engines as the server (`engines.json`, and
`Settings.remote_engines`) and talks to them with the `openai` client; through a server, remote models
need nothing here (the server proxies them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..config import Settings
from ..engine.types import Delta, Message
from ..models import view
from ..models.engines import (
    EngineConfig,
    EngineFile,
    EngineListing,
    RemoteModel,
    alias_conflict,
    engine_error,
    fetch_listings,
    find_model,
    merge_engines,
    parse_engine,
)


class RemoteModels:
    def __init__(self, settings: Settings, is_local: Callable[[str], bool] | None = None) -> None:
        self.settings = settings
        self._is_local = is_local  # whether a local model answers to a name (engine aliases must not clash)
        self._clients: dict[str, Any] = {}

    def engines(self) -> list[EngineConfig]:
        configured = [parse_engine(e, source="remote_engines") for e in self.settings.remote_engines]
        return merge_engines(configured, EngineFile(self.settings.engines_file).load())

    def split(self, name: str) -> RemoteModel | None:
        """The engine model `name` means (`ENGINE/MODEL` or an engine alias); an alias a local model
        also answers to is a 409 `alias_conflict`, as on the server."""
        hit = find_model(name, self.engines())
        if hit is not None and hit.alias and self._is_local is not None and self._is_local(hit.alias):
            raise alias_conflict(hit.alias, hit.engine.name, "a local model")
        return hit

    def row(self, name: str) -> dict[str, Any] | None:
        """The catalog row of `ENGINE/MODEL` (or an engine alias) without asking the engine."""
        hit = self.split(name)
        if hit is None:
            return None
        return view.remote_catalog_rows(hit.engine, EngineListing(hit.engine.name, [{"id": hit.model}]))[0]

    def catalog_rows(self) -> list[dict[str, Any]]:
        return [row for e, listing in self._listings() for row in view.remote_catalog_rows(e, listing)]

    def cache_rows(self) -> list[dict[str, Any]]:
        return [row for e, listing in self._listings() for row in view.remote_cache_rows(e, listing)]

    def _listings(self) -> list[tuple[EngineConfig, EngineListing]]:
        engines = self.engines()
        return list(zip(engines, fetch_listings(engines), strict=True))

    def stream_chat(
        self,
        engine: EngineConfig,
        model: str,
        messages: list[Message],
        body: dict[str, Any],
        cancel: threading.Event,
        deltas: Callable[..., Iterator[Delta]],
    ) -> Iterator[Delta]:
        """The engine's streamed answer; `deltas(stream, cancel, on_error)` reads an openai stream."""
        client = self._client(engine)
        try:
            stream = client.chat.completions.create(
                model=model, messages=messages, stream=True, stream_options={"include_usage": True}, **body
            )
        except Exception as err:
            raise engine_error(engine, err) from None
        return deltas(stream, cancel, lambda err: engine_error(engine, err))

    def _client(self, engine: EngineConfig) -> Any:
        import openai

        key = (engine.name, engine.api_base, engine.key())
        client = self._clients.get(engine.name)
        if client is None or getattr(client, "_foundry_key", None) != key:
            client = openai.OpenAI(
                base_url=engine.api_base,
                api_key=engine.key() or "none",
                max_retries=engine.retries,
                timeout=openai.Timeout(engine.first_byte_timeout, connect=engine.connect_timeout),
            )
            client._foundry_key = key
            self._clients[engine.name] = client
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
