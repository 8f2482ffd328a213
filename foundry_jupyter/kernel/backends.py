"""Where models run for a notebook, behind one interface.

`KernelBackend` hosts the engine inside the kernel (`ChatModel` in-process, models from the local cache).
`ServiceBackend` asks the Jupyter server's Foundry API (REST + the OpenAI client), so one loaded copy
of a model serves every notebook. Both answer with the same plain rows (the REST API's JSON shapes),
which `tables.py` turns into the same DataFrames, so the magics cannot tell them apart.

This module imports neither the server nor the service layer: the kernel side talks to the server only
over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..config import ENV_CACHE, ENV_SERVICE_TOKEN, ENV_SERVICE_URL, Settings, defaults
from ..engine.hardware import normalize_provider
from ..engine.types import Delta, GenerationParams, Message, ResponseFormat, Usage
from ..errors import Cancelled, FoundryError, InvalidRequest, ModelNotFound, error_from_body
from ..models import loading, view
from .remote import RemoteModels

# progress(bytes_done, bytes_total or None, what is being fetched)
Progress = Callable[[int, int | None, str], None]


class ServiceUnavailable(FoundryError):
    """No Foundry service to talk to (the kernel was not started by a server with the extension)."""

    status = 503
    type = "server_error"
    code = "service_unavailable"


@dataclass(frozen=True)
class ModelInfo:
    """A model ready to answer."""

    id: str
    alias: str
    execution_provider: str


@dataclass
class ChatStream:
    """The deltas of one answer, with the model that gives it."""

    model: ModelInfo
    deltas: Iterator[Delta]


class Backend(ABC):
    """What the magics, widgets and notebook helpers need from wherever the models run."""

    name: str

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Where this backend runs models (for `%foundry status`)."""

    @abstractmethod
    def catalog(self) -> list[dict[str, Any]]:
        """Catalog entries in `/foundry/list` shape, each with `cached` set."""

    @abstractmethod
    def cache(self) -> dict[str, Any]:
        """`{"location", "models": [...]}` as `GET foundry/cache` answers."""

    @abstractmethod
    def loaded(self) -> list[dict[str, Any]]:
        """Loaded models as `GET foundry/loaded` lists them."""

    @abstractmethod
    def hardware(self) -> dict[str, Any]:
        """`hardware_report()` as JSON."""

    @abstractmethod
    def resolve(self, name: str) -> dict[str, Any]:
        """The catalog entry (Foundry shape) an alias or id stands for on this machine."""

    @abstractmethod
    def download(self, name: str, progress: Progress | None = None, force: bool = False) -> dict[str, Any]:
        """Make sure a model is in the cache; answers its cache row."""

    @abstractmethod
    def load(self, name: str, progress: Progress | None = None, ep: str | None = None) -> ModelInfo:
        """Download if needed, then load. Loading a loaded model is a no-op."""

    @abstractmethod
    def unload(self, name: str) -> str:
        """Unload a model; answers its id."""

    @abstractmethod
    def remove(self, name: str) -> str:
        """Delete a model from the cache (unloading it first); answers its id."""

    @abstractmethod
    def stream_chat(
        self, model: str, messages: list[Message], params: GenerationParams, cancel: threading.Event
    ) -> ChatStream:
        """Answer `messages` with the (already loaded) model, streaming."""

    @abstractmethod
    def close(self) -> None:
        """Give back what this backend holds."""

    def embed(self, model: str, inputs: list[Any], dimensions: int | None = None) -> Any:
        """float32 vectors (a numpy array, one row per input) from an embedding model, loaded on use."""
        raise FoundryError(f"the {self.name} backend has no embedding models")

    def import_gguf(self, path: str, alias: str | None, precision: str | None) -> dict[str, Any]:
        """Convert a GGUF file into the cache this backend serves from; answers the cached model."""
        model = self._cache_manager().import_gguf(path, alias=alias, precision=precision)
        return model.to_dict()

    @abstractmethod
    def _cache_manager(self) -> Any:
        """A ModelManager over the cache this backend's models come from."""


# --------------------------------------------------------------------------------------------------
# Kernel-resident engine


class KernelBackend(Backend):
    """The engine inside this kernel: models load into this process."""

    name = "kernel"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or defaults()
        self._manager: Any = None
        self._models: dict[str, Any] = {}  # id -> ChatModel
        self._aliases: dict[str, str] = {}  # id -> alias, of the loaded models
        self._lock = threading.RLock()
        self.remote = RemoteModels(self.settings, self._is_local)  # ENGINE/MODEL, asked directly

    @property
    def manager(self) -> Any:
        if self._manager is None:
            from ..models.manager import ModelManager

            self._manager = ModelManager(self.settings)
        return self._manager

    def _cache_manager(self) -> Any:
        return self.manager

    def _is_local(self, name: str) -> bool:
        try:
            self.manager.resolve(name)
        except ModelNotFound:
            return False
        except FoundryError:
            return True  # known here, but not usable as asked
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "where": f"inside this kernel (pid {os.getpid()})",
            "cache": str(self.settings.cache_dir),
        }

    def catalog(self) -> list[dict[str, Any]]:
        return view.catalog_rows(self.manager) + self.remote.catalog_rows()

    def cache(self) -> dict[str, Any]:
        listing = view.cache_listing(self.manager)
        listing["models"] += self.remote.cache_rows()
        return listing

    def loaded(self) -> list[dict[str, Any]]:
        with self._lock:
            models = list(self._models.values())
            aliases = dict(self._aliases)
        pids = [os.getpid()]
        return [
            view.loaded_row(m.model_id, aliases[m.model_id], m.execution_provider, pids=pids) for m in models
        ]

    def hardware(self) -> dict[str, Any]:
        from ..engine.hardware import hardware_report

        return hardware_report().to_dict()

    def resolve(self, name: str) -> dict[str, Any]:
        if (row := self.remote.row(name)) is not None:
            return row
        return view.resolved_row(self.manager, name)

    def download(self, name: str, progress: Progress | None = None, force: bool = False) -> dict[str, Any]:
        return self._fetch(name, progress, force).to_dict()

    def _fetch(self, name: str, progress: Progress | None, force: bool = False) -> Any:
        """Download (or build) a model if needed; an interrupt of the kernel cancels the transfer."""
        callback = _engine_progress(progress) if progress else None
        try:
            return loading.fetch(self.manager, name, progress=callback, force=force)
        except KeyboardInterrupt:
            raise Cancelled(f"download of {name} cancelled") from None

    def load(self, name: str, progress: Progress | None = None, ep: str | None = None) -> ModelInfo:
        if self.remote.split(name) is not None:
            return ModelInfo(name, name, view.DEVICE)  # the engine keeps it loaded: nothing to do here
        with self._lock:
            found = self._find_loaded(name)
            if found is not None and (ep is None or _same_provider(found.execution_provider, ep)):
                return self._info(found)
            cached = self._fetch(name, progress)
            if cached.id in self._models:
                self._close(cached.id)
            model = loading.open_model(self.manager, cached, ep)
            self._models[cached.id] = model
            self._aliases[cached.id] = cached.alias
            return self._info(model)

    def unload(self, name: str) -> str:
        with self._lock:
            found = self._find_loaded(name)
            if found is None:
                raise ModelNotFound(f"{name} is not loaded")
            self._close(found.model_id)
            return found.model_id

    def remove(self, name: str) -> str:
        with self._lock:
            found = self._find_loaded(name)
            if found is not None:
                self._close(found.model_id)
        return self.manager.remove(name).id

    def stream_chat(
        self, model: str, messages: list[Message], params: GenerationParams, cancel: threading.Event
    ) -> ChatStream:
        if (hit := self.remote.split(model)) is not None:
            deltas = self.remote.stream_chat(
                hit.engine, hit.model, messages, _openai_params(params), cancel, _openai_deltas
            )
            return ChatStream(ModelInfo(model, model, view.DEVICE), deltas)
        with self._lock:
            found = self._find_loaded(model)
        if found is None:
            raise ModelNotFound(f"{model} is not loaded: %foundry load {model}")
        if not hasattr(found, "stream_chat"):
            raise InvalidRequest(f"{found.model_id} is an embedding model: it cannot chat", param="model")
        with contextlib.suppress(OSError):  # a read-only cache still answers
            self.manager.cache.touch(found.model_id)
        return ChatStream(self._info(found), found.stream_chat(messages, params, cancel=cancel))

    def embed(self, model: str, inputs: list[Any], dimensions: int | None = None) -> Any:
        self.load(model)
        with self._lock:
            found = self._find_loaded(model)
        if found is None or not hasattr(found, "embed"):
            raise InvalidRequest(f"{model} is not an embedding model", param="model")
        return found.embed(inputs, dimensions=dimensions)[0]

    def close(self) -> None:
        with self._lock:
            for model_id in list(self._models):
                self._close(model_id)
        self.remote.close()

    def _close(self, model_id: str) -> None:
        self._aliases.pop(model_id, None)
        self._models.pop(model_id).close()

    def _find_loaded(self, name: str) -> Any:
        """The loaded ChatModel `name` means, or None (see `view.loaded_id`)."""
        loaded = {model_id: self._aliases[model_id] for model_id in self._models}
        model_id = view.loaded_id(name, loaded, resolve=self._resolved_id)
        return None if model_id is None else self._models[model_id]

    def _resolved_id(self, name: str) -> str | None:
        try:
            return self.manager.resolve(name).id
        except FoundryError:
            return None

    def _info(self, model: Any) -> ModelInfo:
        return ModelInfo(model.model_id, self._aliases[model.model_id], model.execution_provider)


def _same_provider(a: str, b: str) -> bool:
    return normalize_provider(a, strict=False) == normalize_provider(b, strict=False)


def _engine_progress(progress: Progress) -> Callable[[Any], None]:
    def on_progress(p: Any) -> None:
        progress(int(p.bytes_done or 0), int(p.bytes_total) if p.bytes_total else None, str(p.file or ""))

    return on_progress


# --------------------------------------------------------------------------------------------------
# The Jupyter server's Foundry API


class ServiceBackend(Backend):
    """The Foundry API of the Jupyter server that started this kernel."""

    name = "server"

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        import httpx

        self.url = url if url.endswith("/") else url + "/"
        self.token = token
        self._http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {token}"}, timeout=timeout_s
        )
        self._openai: Any = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServiceBackend | None:
        env = dict(os.environ) if env is None else env
        url, token = env.get(ENV_SERVICE_URL), env.get(ENV_SERVICE_TOKEN)
        return cls(url, token) if url and token is not None else None

    @property
    def openai(self) -> Any:
        if self._openai is None:
            import openai

            key = self.token or "none"
            self._openai = openai.OpenAI(base_url=self.url + "v1", api_key=key, max_retries=0)
        return self._openai

    def ping(self, timeout_s: float = 3.0) -> bool:
        """Whether the service answers (used to pick a backend)."""
        import httpx

        try:
            return self._http.get("openai/status", timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise ServiceUnavailable(f"the Foundry service at {self.url} does not answer ({err})") from None
        if response.status_code >= 400:
            fallback = f"the Foundry service answered {response.status_code}"
            raise error_from_body(response.status_code, response.content, fallback)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def describe(self) -> dict[str, Any]:
        status = self._request("GET", "openai/status") or {}
        return {
            "backend": self.name,
            "where": f"the Jupyter server's Foundry service at {self.url}",
            "cache": status.get("modelDirPath") or status.get("ModelDirPath"),
        }

    def catalog(self) -> list[dict[str, Any]]:
        return self._request("GET", "foundry/list")

    def cache(self) -> dict[str, Any]:
        return self._request("GET", "cache")

    def loaded(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "loaded").get("models", []))

    def hardware(self) -> dict[str, Any]:
        return self._request("GET", "hardware")

    def _cache_manager(self) -> Any:
        # The server and its kernels share a machine: import straight into the server's cache folder,
        # which the service scans again on its next listing.
        from ..models.manager import ModelManager

        return ModelManager(defaults({**os.environ, ENV_CACHE: self.cache()["location"]}))

    def resolve(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"foundry/resolve/{quote(name, safe='')}")

    def download(self, name: str, progress: Progress | None = None, force: bool = False) -> dict[str, Any]:
        if not force:
            for m in self.cache()["models"]:
                if name in (m.get("id"), m.get("alias")):
                    return m
        record = self._request("POST", "downloads", json={"model": name})
        deadline = time.monotonic() + 6 * 3600
        try:
            while record.get("state") == "running" and time.monotonic() < deadline:
                if progress:
                    done = int(record.get("bytesDone") or 0)
                    progress(done, record.get("bytesTotal"), record.get("file") or "")
                time.sleep(0.25)
                jobs = self._request("GET", "downloads")["downloads"]
                found = [d for d in jobs if d.get("id") == record["id"]]
                record = found[0] if found else {**record, "state": "done"}
        except KeyboardInterrupt:  # the user interrupted the kernel: the server stops the transfer too
            with contextlib.suppress(FoundryError):
                self._request("DELETE", f"downloads/{quote(str(record.get('id')), safe='')}")
            raise Cancelled(f"download of {name} cancelled") from None
        if record.get("state") != "done":
            reason = record.get("error") or record.get("state")
            raise FoundryError(f"download of {name} did not finish: {reason}")
        if progress:
            total = record.get("bytesTotal") or record.get("bytesDone") or 0
            progress(int(total), int(total) if total else None, "")
        model_id = record.get("model") or name
        for m in self.cache()["models"]:
            if model_id in (m.get("id"), m.get("alias")) or name in (m.get("id"), m.get("alias")):
                return m
        raise FoundryError(f"{name} was downloaded but is not in the cache")

    def load(self, name: str, progress: Progress | None = None, ep: str | None = None) -> ModelInfo:
        found = self._find_loaded(name)
        if found is not None and (ep is None or _same_provider(found["executionProvider"], ep)):
            return _loaded_info(found)
        if (remote := self._remote_row(name)) is not None:
            return ModelInfo(remote["id"], remote["alias"], view.DEVICE)  # the server proxies it
        cached = self.download(name, progress)
        params = {"ep": ep} if ep else {}
        self._request("GET", f"openai/load/{quote(cached['id'], safe='')}", params=params)
        found = self._find_loaded(cached["id"])
        if found is None:
            return ModelInfo(cached["id"], cached.get("alias", ""), cached.get("executionProvider", ""))
        return _loaded_info(found)

    def unload(self, name: str) -> str:
        found = self._find_loaded(name)
        if found is None:
            raise ModelNotFound(f"{name} is not loaded")
        self._request("GET", f"openai/unload/{quote(found['id'], safe='')}", params={"force": "true"})
        return found["id"]

    def remove(self, name: str) -> str:
        answer = self._request("DELETE", f"cache/{quote(name, safe='')}") or {}
        return answer.get("removed", name)

    def stream_chat(
        self, model: str, messages: list[Message], params: GenerationParams, cancel: threading.Event
    ) -> ChatStream:
        found = self._find_loaded(model)
        info = _loaded_info(found) if found else ModelInfo(model, model, "")
        body = _openai_params(params)
        try:
            stream = self.openai.chat.completions.create(
                model=info.id, messages=messages, stream=True, stream_options={"include_usage": True}, **body
            )
        except Exception as err:
            raise _openai_error(err) from None
        return ChatStream(info, _openai_deltas(stream, cancel))

    def embed(self, model: str, inputs: list[Any], dimensions: int | None = None) -> Any:
        import base64

        import numpy as np

        body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "base64"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        answer = self._request("POST", "v1/embeddings", json=body, timeout=600.0)
        rows = sorted(answer["data"], key=lambda d: d["index"])
        return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in rows])

    def close(self) -> None:
        self._http.close()
        if self._openai is not None:
            self._openai.close()

    def _remote_row(self, name: str) -> dict[str, Any] | None:
        """The server's row for a remote engine's model (`ENGINE/MODEL` or an engine alias), None for
        other names. An alias that clashes with a local one is the server's 409, raised here."""
        try:
            row = self.resolve(name)
        except FoundryError as exc:
            if exc.code == "alias_conflict":
                raise
            return None
        return row if row.get("remote") else None

    def _find_loaded(self, name: str) -> dict[str, Any] | None:
        rows = {row["id"]: row for row in self.loaded()}
        model_id = view.loaded_id(name, {row["id"]: row["alias"] for row in rows.values()})
        return None if model_id is None else rows[model_id]


def _loaded_info(row: dict[str, Any]) -> ModelInfo:
    return ModelInfo(row["id"], row.get("alias") or "", row.get("executionProvider") or "")


def _openai_params(params: GenerationParams) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    for key in ("temperature", "top_p", "seed"):
        if getattr(params, key) is not None:
            body[key] = getattr(params, key)
    if params.stop:
        body["stop"] = list(params.stop)
    extra: dict[str, Any] = {}
    if params.top_k is not None:
        extra["top_k"] = params.top_k
    if params.thinking is not None:
        extra["chat_template_kwargs"] = {"enable_thinking": params.thinking}
    if extra:
        body["extra_body"] = extra
    fmt: ResponseFormat | None = params.response_format
    if fmt is not None and fmt.kind == "json_schema":
        schema = {"name": "answer", "schema": fmt.schema}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt is not None and fmt.kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    return body


def _openai_deltas(
    stream: Any, cancel: threading.Event, on_error: Callable[[Exception], FoundryError] | None = None
) -> Iterator[Delta]:
    finish: Any = None
    usage: Usage | None = None
    try:
        for chunk in stream:
            if cancel.is_set():
                finish = "cancelled"
                break
            if chunk.usage is not None:
                usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices:
                if choice.finish_reason:
                    finish = choice.finish_reason
                text = choice.delta.content if choice.delta else None
                thought = getattr(choice.delta, "reasoning_content", None) if choice.delta else None
                if text or thought:
                    yield Delta(text or "", reasoning=thought or "")
    except Exception as err:
        raise (on_error or _openai_error)(err) from None
    finally:
        stream.close()
    yield Delta("", finish_reason=finish or "stop", usage=usage)


def _openai_error(err: Exception) -> FoundryError:
    import openai

    if isinstance(err, FoundryError):
        return err
    if isinstance(err, openai.APIConnectionError):
        return ServiceUnavailable(f"the Foundry service does not answer ({err})")
    if isinstance(err, openai.APIStatusError):
        return error_from_body(err.status_code, err.body, err.message)
    return FoundryError(f"the Foundry service failed: {err}")


# --------------------------------------------------------------------------------------------------


def choose_backend(which: str = "auto", settings: Settings | None = None) -> Backend:
    """`server` needs the service the kernel was started with; `auto` uses it when it answers."""
    if which not in ("auto", "kernel", "server"):
        raise FoundryError(f"unknown backend {which!r}: use kernel, server or auto")
    if which == "kernel":
        return KernelBackend(settings)
    service = ServiceBackend.from_env()
    if which == "server":
        if service is None:
            raise ServiceUnavailable(
                f"no Foundry service: {ENV_SERVICE_URL} is not set (this kernel was not started by a "
                "Jupyter server with the foundry_jupyter extension)"
            )
        if not service.ping():
            service.close()
            raise ServiceUnavailable(f"the Foundry service at {service.url} does not answer")
        return service
    if service is not None and service.ping():
        return service
    if service is not None:
        service.close()
    return KernelBackend(settings)
