"""Route handlers: parse, call the service function, write. Every verb is authenticated and authorized."""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..service import foundry, openai
from ..service.openapi import spec
from ..service.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DownloadJobRequest,
    FoundryDownloadRequest,
    TokenCountRequest,
    parse,
)
from .base import FoundryHandler

MODEL = r"(?P<name>[^/]+(?:/[^/]+)*)"  # ids may hold ':' and, for registered models, '/'


class ModelsHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await openai.list_models(self.service))


class ModelHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.send_json(await openai.get_model(self.service, self.model_name(name)))


class _GenerationHandler(FoundryHandler):
    def check_names(self, req: ChatCompletionRequest | CompletionRequest) -> None:
        self.model_name(req.model)
        self.ep_name(req.ep)


class ChatCompletionsHandler(_GenerationHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = parse(ChatCompletionRequest, self.json_body())
        self.check_names(req)
        stream = await openai.open_chat(self.service, req)
        self.cancel_on_close(stream)
        if req.stream:
            await self.send_events(openai.chat_chunks(stream, req))
            return
        answer = await openai.collect_chat(stream)
        if not stream.cancelled:
            self.send_json(answer)


class CompletionsHandler(_GenerationHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = parse(CompletionRequest, self.json_body())
        self.check_names(req)
        stream = await openai.open_text(self.service, req)
        self.cancel_on_close(stream)
        if req.stream:
            await self.send_events(openai.text_chunks(stream, req))
            return
        answer = await openai.collect_text(stream)
        if not stream.cancelled:
            self.send_json(answer)


class TokenCountHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = parse(TokenCountRequest, self.json_body())
        self.model_name(req.model)
        self.send_json(await openai.count_tokens(self.service, req))


class StatusHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(foundry.status(self.service, self.service_url))


class CatalogListHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.catalog_list(self.service))


class CachedModelsHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.cached_ids(self.service))


class DownloadHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = parse(FoundryDownloadRequest, self.json_body())
        lines = foundry.download_lines(self.service, self.model_name(req.model_name()))
        first = await anext(lines)  # an unknown model answers 404 here, before the stream starts

        async def all_lines() -> Any:
            try:
                yield first
                async for line in lines:
                    yield line
            finally:
                await lines.aclose()  # a client that leaves stops listening; the download goes on

        await self.send_lines(all_lines())


class LoadHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        ttl = self.query_int("ttl")
        if ttl is None and self.get_query_argument("timeout", None) is not None:
            ttl = self.query_int("timeout")  # Foundry's C# client sends `timeout`
        if ttl is None and not self.query_bool("unload", default=True):
            ttl = 0  # Foundry's `unload=false`: stay loaded until unloaded
        ep = self.ep_name(self.get_query_argument("ep", None))
        self.send_json(await foundry.load(self.service, self.model_name(name), ttl=ttl, ep=ep))


class UnloadHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        force = self.query_bool("force")
        self.send_json(await foundry.unload(self.service, self.model_name(name), force=force))


class UnloadAllHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.unload_all(self.service))


class LoadedModelsHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(foundry.loaded_ids(self.service))


class OpenApiHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(spec(self.service_url))


# ---- extras for the sidebar and the kernel ----------------------------------------------------
class HardwareHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.hardware(self.service))


class CacheHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.cache_listing(self.service))


class CacheEntryHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        self.send_json(await foundry.cache_remove(self.service, self.model_name(name)))


class LoadedHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(foundry.loaded_details(self.service))


class DownloadsHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json({"downloads": [job.to_dict() for job in self.service.downloads.list()]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = parse(DownloadJobRequest, self.json_body())
        job = await self.service.downloads.start(self.model_name(req.model))
        self.send_json(job.to_dict(), status=202)


class DownloadJobHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        self.send_json(self.service.downloads.get(job_id).to_dict())

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        self.send_json(self.service.downloads.cancel(job_id).to_dict())


class ZipLogsHandler(FoundryHandler):
    """The diagnostics zip of `jupyter foundry zip-logs`, for the sidebar's button."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        from ..service.diagnostics import build_bundle, bundle_name

        extra = {
            "status.json": foundry.status(self.service, self.service_url),
            "loaded.json": foundry.loaded_details(self.service),
        }
        token = getattr(self.identity_provider, "token", "") or ""
        manager = await self.service.manager()
        data = await asyncio.to_thread(build_bundle, manager, extra=extra, secrets=[token])
        self.set_header("Content-Disposition", f'attachment; filename="{bundle_name()}"')
        self.finish(data, set_content_type="application/zip")


class CatchAllHandler(FoundryHandler):
    """Any other path under the prefix: an OpenAI-shaped 404, after authentication."""

    @web.authenticated
    @authorized
    async def get(self, **_path: Any) -> None:
        raise web.HTTPError(404)

    post = put = patch = delete = head = get


# (path under the prefix, handler): the order matters only for the catch-all, which comes last.
ROUTES: list[tuple[str, type[FoundryHandler]]] = [
    ("v1/models", ModelsHandler),
    (f"v1/models/{MODEL}", ModelHandler),
    ("v1/chat/completions", ChatCompletionsHandler),
    ("v1/chat/completions/tokenizer/encode/count", TokenCountHandler),
    ("v1/completions", CompletionsHandler),
    ("openai/status", StatusHandler),
    ("foundry/list", CatalogListHandler),
    ("openai/models", CachedModelsHandler),
    ("openai/download", DownloadHandler),
    (f"openai/load/{MODEL}", LoadHandler),
    (f"openai/unload/{MODEL}", UnloadHandler),
    ("openai/unloadall", UnloadAllHandler),
    ("openai/loadedmodels", LoadedModelsHandler),
    ("openapi.json", OpenApiHandler),
    ("hardware", HardwareHandler),
    ("cache", CacheHandler),
    (f"cache/{MODEL}", CacheEntryHandler),
    ("loaded", LoadedHandler),
    ("downloads", DownloadsHandler),
    (r"downloads/(?P<job_id>[A-Za-z0-9_-]+)", DownloadJobHandler),
    ("zip-logs", ZipLogsHandler),
    (r"(?P<rest>.*)", CatchAllHandler),
]
