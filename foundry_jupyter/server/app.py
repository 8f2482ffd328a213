"""`FoundryApp`: the jupyter_server extension serving models under `{base_url}foundry/`.

Configured by traitlets (`c.FoundryApp.cache_dir = ...`) whose defaults come from
`foundry_jupyter.config.defaults()`, so the `FOUNDRY_JUPYTER_*` environment variables apply too.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default

from .. import config
from ..service import workdirs
from ..service.core import FoundryService
from ..service.response_store import DEFAULT_MAX_AGE_S, DEFAULT_MAX_ENTRIES, ResponseStore
from ..service.runners import RunnerSupervisor
from . import limits
from .handlers import ROUTES

PREFIX = "foundry"


class FoundryApp(ExtensionApp):
    name = "foundry"
    description = "Local LLM inference on ONNX Runtime GenAI, served under the Jupyter server."
    extension_url = "/foundry/openapi.json"
    load_other_extensions = True

    cache_dir = Unicode(
        help="Folder of the model cache (Foundry Local layout). Default: $FOUNDRY_JUPYTER_CACHE, else "
        "~/.foundry-jupyter/cache/models."
    ).tag(config=True)

    catalog_files = List(
        Unicode(),
        help="Extra catalog JSON files (a list of entries or {'models': [...]}), added to the shipped "
        "catalog. Default: $FOUNDRY_JUPYTER_CATALOGS (os.pathsep-separated).",
    ).tag(config=True)

    default_ttl = Int(
        help="Seconds a loaded model may stay idle before its runner is stopped; 0 keeps it loaded until "
        "unloaded. A load or request may set its own `ttl`. Default: $FOUNDRY_JUPYTER_TTL, else 600.",
    ).tag(config=True)

    max_loaded_models = Int(
        help="At most this many models are loaded at once (each in its own runner processes); loading "
        "one more unloads the least recently used idle model. Default: $FOUNDRY_JUPYTER_MAX_LOADED, else 4.",
    ).tag(config=True)

    max_runner_processes = Int(
        4,
        help="At most this many processes per loaded model. A CPU model whose operators use fewer threads "
        "than the machine has cores (a small model) gets another process whenever all of its processes "
        "are busy: one process makes one token at a time, and the OS shares the cores between processes "
        "better than threads. Models that use every core keep one process and batch requests in it.",
    ).tag(config=True)

    runner_nice = Int(
        5,
        help="How much lower than the server's the runner processes' CPU priority is (Unix nice). A model "
        "that keeps every core busy then still leaves the Jupyter server, its kernels and the stream it "
        "serves a core as soon as they need one. 0 runs them at the server's priority.",
    ).tag(config=True)

    runner_transport = Enum(
        ["auto", "unix", "tcp"],
        help="How the server talks to its runner processes: a unix socket in a folder only this user can "
        "open, or loopback TCP where every connection must present a secret generated per runner. "
        "auto: the unix socket where the platform has one (not Windows), else TCP. "
        "Default: $FOUNDRY_JUPYTER_RUNNER_TRANSPORT, else auto.",
    ).tag(config=True)

    default_ep = Unicode(
        allow_none=True,
        help="Execution provider for models loaded without an explicit `ep` (cpu, cuda, dml, ...); empty "
        "picks the best one the model and machine allow. Default: $FOUNDRY_JUPYTER_EP.",
    ).tag(config=True)

    runner_start_timeout = Float(
        120.0, help="Seconds a runner process may take to load its model before the load fails."
    ).tag(config=True)

    runner_first_token_timeout = Float(
        300.0,
        help="Seconds a model runner may take to send the first piece of an answer (prompt processing "
        "included) before it counts as hung: the request answers 504 runner_timeout and the runner is "
        "killed; the next request starts a fresh one. 0: no limit.",
    ).tag(config=True)

    runner_token_timeout = Float(
        60.0,
        help="Seconds a model runner may stay silent between two pieces of an answer before it counts as "
        "hung (a streaming client then gets a final error event). 0: no limit.",
    ).tag(config=True)

    runner_stop_timeout = Float(
        5.0, help="Seconds a runner gets to exit after SIGTERM before it is killed."
    ).tag(config=True)

    remote_engines = List(
        Dict(),
        help="Remote OpenAI-compatible engines (vLLM, Ray Serve LLM, SGLang, Ollama, another "
        "foundry-jupyter) whose models are served as ENGINE/MODEL beside the local ones. Each: "
        "{'name': 'vllm-a', 'base_url': 'http://gpu1:8000/v1', 'api_key_env': 'VLLM_KEY' (or "
        "'api_key': SecretStr('...') from pydantic: Jupyter prints its config at DEBUG, and an engine "
        "whose key is plain text here is left out), 'models': [...] (default: the engine's GET "
        "/v1/models), 'aliases': {'llama': 'meta-llama/Llama-3.1-8B-Instruct'}, 'max_in_flight': 16, "
        "'connect_timeout': 5, 'first_byte_timeout': 120, 'idle_timeout': 60}. Engines added with "
        "`jupyter foundry engine add` live in engines.json beside the cache folder.",
    ).tag(config=True)

    responses_max_entries = Int(
        DEFAULT_MAX_ENTRIES,
        help="At most this many responses of POST v1/responses (store: true) are kept in memory for "
        "GET v1/responses/{id}, input_items and previous_response_id; storing one more drops the least "
        "recently used. 0: no limit of this kind.",
    ).tag(config=True)

    responses_max_age = Float(
        DEFAULT_MAX_AGE_S,
        help="Seconds a stored response is kept after it was created; an older one answers 404 (and 400 "
        "as a previous_response_id). 0: no limit of this kind. Stored responses do not outlive the server.",
    ).tag(config=True)

    max_body_size = Int(
        32 * 1024 * 1024,
        help="Largest request body, in bytes, the routes under foundry/ accept. A larger one is answered "
        "413 (code request_too_large) as soon as its headers arrive, before any of it is read.",
    ).tag(config=True)

    client_header_timeout = Float(
        60.0,
        help="Seconds a connection to the Jupyter server may take to send a request's headers, counted from "
        "when it opened or from the end of its previous answer, so it also closes idle kept-alive "
        "connections (nginx's client_header_timeout and keepalive_timeout; tornado keeps one timer for "
        "both). Applies to the whole server, which otherwise keeps half-open connections for an hour. "
        "0 leaves tornado's default.",
    ).tag(config=True)

    client_body_timeout = Float(
        300.0,
        help="Seconds a request's body may take to arrive, once its headers have (nginx's "
        "client_body_timeout, here for the whole body). Applies to the whole server. 0: no limit.",
    ).tag(config=True)

    export_env = Bool(
        True,
        help="Export FOUNDRY_JUPYTER_URL and FOUNDRY_JUPYTER_TOKEN into this process's environment, so the "
        "kernels this server starts find the service without configuration.",
    ).tag(config=True)

    @default("cache_dir")
    def _cache_dir(self) -> str:
        return str(config.defaults().cache_dir)

    @default("catalog_files")
    def _catalog_files(self) -> list[str]:
        return [str(p) for p in config.defaults().catalog_files]

    @default("default_ttl")
    def _default_ttl(self) -> int:
        return config.defaults().ttl_s

    @default("max_loaded_models")
    def _max_loaded(self) -> int:
        return config.defaults().max_loaded_models

    @default("runner_transport")
    def _runner_transport(self) -> str:
        return os.environ.get(config.ENV_RUNNER_TRANSPORT, "").strip().lower() or "auto"

    @default("default_ep")
    def _default_ep(self) -> str | None:
        return config.defaults().execution_provider

    _exported: str | None = None  # the URL this app put into os.environ

    # ---- extension hooks ----------------------------------------------------------------------
    def settings_object(self) -> config.Settings:
        base = config.defaults()
        cache = Path(self.cache_dir).expanduser()
        return dataclasses.replace(
            base,
            cache_dir=cache,
            catalog_files=tuple(Path(p).expanduser() for p in self.catalog_files),
            ttl_s=self.default_ttl,
            execution_provider=self.default_ep or None,
            max_loaded_models=max(1, self.max_loaded_models),
            registry_file=cache.parent / "registered.json",
            remote_engines=tuple(self.remote_engines),
            engines_file=cache.parent / "engines.json",
        )

    def initialize_settings(self) -> None:
        settings = self.settings_object()
        supervisor = RunnerSupervisor(
            start_timeout_s=self.runner_start_timeout,
            stop_timeout_s=self.runner_stop_timeout,
            max_loaded=settings.max_loaded_models,
            max_processes=self.max_runner_processes,
            nice=self.runner_nice,
            default_ttl_s=settings.ttl_s,
            transport=self.runner_transport,
            first_token_timeout_s=self.runner_first_token_timeout,
            token_timeout_s=self.runner_token_timeout,
        )
        responses = ResponseStore(max_entries=self.responses_max_entries, max_age_s=self.responses_max_age)
        self.service = FoundryService(settings, supervisor=supervisor, responses=responses)
        workdirs.remove_dead_workdirs()
        self.settings["foundry_service"] = self.service
        self.settings["foundry_max_body_size"] = self.max_body_size
        self.settings["foundry_prefix"] = url_path_join(self.serverapp.base_url, PREFIX) + "/"
        self._export_env()

    def initialize_handlers(self) -> None:
        self.handlers.extend((url_path_join(PREFIX, route.pattern), route.handler) for route in ROUTES)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        # The port is bound by now (it may differ from the configured one after port retries).
        self._export_env()
        limits.apply_connection_timeouts(
            serverapp, header_timeout_s=self.client_header_timeout, body_timeout_s=self.client_body_timeout
        )
        self.service.warm_up()
        self.service.supervisor.start()

    async def stop_extension(self) -> None:
        try:
            await self.service.close()
        except Exception:
            self.log.exception("stopping the model runners failed")
        if self._exported and os.environ.get(config.ENV_SERVICE_URL) == self._exported:
            os.environ.pop(config.ENV_SERVICE_URL, None)
            os.environ.pop(config.ENV_SERVICE_TOKEN, None)

    def _export_env(self) -> None:
        if not self.export_env:
            return
        try:
            url = url_path_join(self.serverapp.connection_url, PREFIX) + "/"
            token = self.serverapp.identity_provider.token or ""
        except Exception:
            self.log.debug("service URL not known yet", exc_info=True)
            return
        os.environ[config.ENV_SERVICE_URL] = url
        os.environ[config.ENV_SERVICE_TOKEN] = token
        self._exported = url


main = launch_new_instance = FoundryApp.launch_instance
