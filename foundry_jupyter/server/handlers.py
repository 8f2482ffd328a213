"""Route handlers: parse, call the service function, write. Every verb is authenticated and authorized.

Each handler is declared with `@route(path, method=Operation(...))`: that one declaration is what the
server registers (`ROUTES`), what `openapi.json` documents and what the auth test walks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import InvalidRequest
from ..models.engines import EngineConfig
from ..service import embeddings, foundry, openai, responses
from ..service.openapi import EVENTS, JSON, TEXT, Operation, Param, Route, spec
from ..service.remote import EngineError
from ..service.response_schemas import ResponseCreateRequest
from ..service.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DownloadJobRequest,
    EmbeddingRequest,
    FoundryDownloadRequest,
    TokenCountRequest,
    parse,
)
from . import proxy
from .base import FoundryHandler

H = TypeVar("H", bound=type[FoundryHandler])

# Every route under the prefix, in the order the server matches them (the catch-all comes last).
ROUTES: list[Route] = []


def route(path: str, **operations: Operation) -> Callable[[H], H]:
    """Serve `path` (under the prefix; `{param}` placeholders from `openapi.PATH_PARAMS`) with the
    decorated handler, documenting one `Operation` per HTTP method it implements."""

    def declare(handler: H) -> H:
        ROUTES.append(Route(path, handler, operations))
        handler.state_changing = frozenset(m.upper() for m, op in operations.items() if op.changes_state)
        return handler

    return declare


@route(
    "v1/models", get=Operation("List the cached and loaded models (OpenAI format).", "`{object: list, data}`")
)
class ModelsHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await openai.list_models(self.service))


@route("v1/models/{name}", get=Operation("One model, by id or alias.", "A model object"))
class ModelHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.send_json(await openai.get_model(self.service, self.model_name(name)))


class _GenerationHandler(FoundryHandler):
    def check_names(self, req: ChatCompletionRequest | CompletionRequest) -> None:
        self.model_name(req.model)
        self.ep_name(req.ep)


@route(
    "v1/chat/completions",
    post=Operation(
        "Chat completion; SSE when `stream` is true. Loads a cached model on first use.",
        "`chat.completion`, or `chat.completion.chunk` events",
        body=ChatCompletionRequest,
        media=(JSON, EVENTS),
    ),
)
class ChatCompletionsHandler(_GenerationHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        if proxy.is_remote(self, body):  # ENGINE/MODEL: the remote engine answers
            await proxy.send_proxied(self, "chat/completions", body)
            return
        req = parse(ChatCompletionRequest, body)
        self.check_names(req)
        stream = await openai.open_chat(self.service, req)
        self.cancel_on_close(stream)
        if req.stream:
            await self.send_events(openai.chat_chunks(stream, req))
            return
        answer = await openai.collect_chat(stream)
        if not stream.cancelled:
            self.send_json(answer)


@route(
    "v1/completions",
    post=Operation(
        "Legacy text completion.", "`text_completion`", body=CompletionRequest, media=(JSON, EVENTS)
    ),
)
class CompletionsHandler(_GenerationHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        if proxy.is_remote(self, body):
            await proxy.send_proxied(self, "completions", body)
            return
        req = parse(CompletionRequest, body)
        self.check_names(req)
        stream = await openai.open_text(self.service, req)
        self.cancel_on_close(stream)
        if req.stream:
            await self.send_events(openai.text_chunks(stream, req))
            return
        answer = await openai.collect_text(stream)
        if not stream.cancelled:
            self.send_json(answer)


@route(
    "v1/responses",
    post=Operation(
        "Create a response (OpenAI's Responses API); typed SSE events when `stream` is true.",
        "A `response` object, or `response.*` events",
        body=ResponseCreateRequest,
        media=(JSON, EVENTS),
    ),
)
class ResponsesHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = parse(ResponseCreateRequest, self.json_body())
        self.model_name(req.model)
        self.ep_name(req.ep)
        try:
            run, stream = await responses.open_response(self.service, self.service.responses, req)
        except EngineError as exc:  # a remote engine's refusal keeps its status and Retry-After
            proxy.send_error(self, exc)
            return
        self.cancel_on_close(stream)
        if req.stream:
            await self.send_events(responses.response_events(run, stream), done=False, named=True)
            return
        try:
            answer = await responses.collect_response(run, stream)
        except EngineError as exc:
            if not stream.cancelled:
                proxy.send_error(self, exc)
            return
        if not stream.cancelled:
            self.send_json(answer)


@route(
    "v1/responses/{response_id}",
    get=Operation("A stored response.", "A `response` object"),
    delete=Operation("Delete a stored response.", "`{id, object: response.deleted, deleted: true}`"),
)
class ResponseHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self, response_id: str) -> None:
        self.send_json(responses.get_response(self.service.responses, response_id))

    @web.authenticated
    @authorized
    async def delete(self, response_id: str) -> None:
        self.send_json(responses.delete_response(self.service.responses, response_id))


@route(
    "v1/responses/{response_id}/input_items",
    get=Operation(
        "The items a stored response read (earlier turns included), newest first by default.",
        "`{object: list, data, first_id, last_id, has_more}`",
        query=(
            Param(
                "limit",
                f"Items per page (1-{responses.MAX_LIST_LIMIT}, default 20).",
                {"type": "integer", "minimum": 1, "maximum": responses.MAX_LIST_LIMIT},
            ),
            Param("after", "List the items after this item id."),
            Param("order", "`asc` or `desc` (default).", {"type": "string", "enum": ["asc", "desc"]}),
        ),
    ),
)
class ResponseInputItemsHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self, response_id: str) -> None:
        limit = self.query_int("limit", minimum=1)
        if limit is not None and limit > responses.MAX_LIST_LIMIT:
            raise InvalidRequest(
                f"Query parameter 'limit' must be at most {responses.MAX_LIST_LIMIT}.", param="limit"
            )
        order = self.get_query_argument("order", None) or "desc"
        if order not in ("asc", "desc"):
            raise InvalidRequest(
                f"Query parameter 'order' must be asc or desc, not {order!r}.", param="order"
            )
        after = self.get_query_argument("after", None) or None
        page = responses.list_input_items(
            self.service.responses, response_id, limit=limit or 20, after=after, order=order
        )
        self.send_json(page)


@route(
    "v1/embeddings",
    post=Operation(
        "Embeddings of texts or token arrays from an embedding model; loads a cached model on first use.",
        "`{object: list, data: [{object: embedding, index, embedding}], model, usage}`",
        body=EmbeddingRequest,
    ),
)
class EmbeddingsHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        if proxy.is_remote(self, body):
            await proxy.send_proxied(self, "embeddings", body)
            return
        req = parse(EmbeddingRequest, body)
        self.model_name(req.model)
        self.send_json(await embeddings.create_embeddings(self.service, req))


@route(
    "v1/chat/completions/tokenizer/encode/count",
    post=Operation("Count the prompt tokens of a chat request.", "`{tokenCount}`", body=TokenCountRequest),
)
class TokenCountHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = parse(TokenCountRequest, self.json_body())
        self.model_name(req.model)
        self.send_json(await openai.count_tokens(self.service, req))


@route(
    "openai/status",
    get=Operation(
        "Service status (Foundry Local).", "`{Endpoints, ModelDirPath, PipeName}` and camelCase twins"
    ),
)
class StatusHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(foundry.status(self.service, self.service_url))


@route("foundry/list", get=Operation("The catalog, best variant of each alias first.", "Array of entries"))
class CatalogListHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.catalog_list(self.service))


@route(
    "foundry/resolve/{name}",
    get=Operation(
        "The catalog variant an alias or id stands for on this machine.", "A catalog entry with `cached`"
    ),
)
class ResolveHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.send_json(await foundry.resolve(self.service, self.model_name(name)))


@route("openai/models", get=Operation("Ids of the cached models.", "Array of ids"))
class CachedModelsHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.cached_ids(self.service))


@route(
    "openai/download",
    post=Operation(
        "Download a model; streams `Total NN.NN% Downloading <file>` lines, then "
        "`[DONE]` and `{success, errorMessage}`.",
        "text/plain progress lines",
        body=FoundryDownloadRequest,
        media=(TEXT,),
    ),
)
class DownloadHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = parse(FoundryDownloadRequest, self.json_body())
        lines = foundry.download_lines(self.service, self.model_name(req.model_name()))
        first = await anext(lines)  # an unknown model answers 404 here, before the stream starts

        async def all_lines() -> AsyncGenerator[str, None]:
            try:
                yield first
                async for line in lines:
                    yield line
            finally:
                await lines.aclose()  # a client that leaves stops listening; the download goes on

        await self.send_lines(all_lines())


@route(
    "openai/load/{name}",
    get=Operation(
        "Load a model into its own runner process.",
        "`{status: loaded|already_loaded, id, executionProvider, ttlSeconds}`",
        query=(
            Param(
                "ttl",
                "Idle seconds before unloading (0: never; default 600).",
                {"type": "integer", "minimum": 0},
            ),
            Param("ep", "Execution provider."),
        ),
        changes_state=True,
    ),
)
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


@route(
    "openai/unload/{name}",
    get=Operation(
        "Unload a model.",
        "`{status: unloaded|not_loaded, id}`",
        query=(Param("force", "Stop it even while it serves requests.", {"type": "boolean"}),),
        changes_state=True,
    ),
)
class UnloadHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        force = self.query_bool("force")
        self.send_json(await foundry.unload(self.service, self.model_name(name), force=force))


@route("openai/unloadall", get=Operation("Unload every model.", "`{status, models}`", changes_state=True))
class UnloadAllHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.unload_all(self.service))


@route("openai/loadedmodels", get=Operation("Ids of the loaded models.", "Array of ids"))
class LoadedModelsHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(foundry.loaded_ids(self.service))


@route("openapi.json", get=Operation("This document.", "OpenAPI 3.1"))
class OpenApiHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(spec(self.service_url, ROUTES))


# ---- extras for the sidebar and the kernel ----------------------------------------------------
@route("hardware", get=Operation("CPU, memory, GPUs and execution providers.", "Hardware report"))
class HardwareHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.hardware(self.service))


@route("cache", get=Operation("The model cache.", "`{location, models}`"))
class CacheHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.cache_listing(self.service))


@route("cache/{name}", delete=Operation("Delete a cached model (unloading it first).", "`{removed}`"))
class CacheEntryHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        self.send_json(await foundry.cache_remove(self.service, self.model_name(name)))


@route("loaded", get=Operation("Loaded models with TTL left, memory, EP and pid.", "`{models}`"))
class LoadedHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(foundry.loaded_details(self.service))


@route(
    "downloads",
    get=Operation("Background downloads.", "`{downloads}`"),
    post=Operation("Start a background download.", "202 with the job", body=DownloadJobRequest, status=202),
)
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


@route(
    "downloads/{job_id}",
    get=Operation("One background download.", "The job"),
    delete=Operation("Cancel a background download.", "The job"),
)
class DownloadJobHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        self.send_json(self.service.downloads.get(job_id).to_dict())

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        self.send_json(self.service.downloads.cancel(job_id).to_dict())


@route(
    "openai/register",
    post=Operation(
        "Register a remote OpenAI-compatible engine (Foundry's `{TypeName, ModelName, BaseUri}` or an "
        "engine object); its models are then served as ENGINE/MODEL.",
        "`{status: registered, engine}`",
        body=EngineConfig,
    ),
)
class RegisterEngineHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.send_json(await foundry.register_engine(self.service, self.json_body()))


@route("engines", get=Operation("Remote engines with health, latency and model count.", "`{engines}`"))
class EnginesHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(await foundry.engines(self.service))


@route(
    "engines/{engine}",
    delete=Operation(
        "Forget a registered engine (one set in the Jupyter config answers 400 engine_configured).",
        "`{status: removed, engine}`",
    ),
)
class EngineHandler(FoundryHandler):
    @web.authenticated
    @authorized
    async def delete(self, engine: str) -> None:
        self.send_json(await foundry.remove_engine(self.service, engine))


@route(
    "zip-logs",
    get=Operation("A diagnostics zip, tokens and keys removed.", "A zip file", media=("application/zip",)),
)
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


@route("{rest}")
class CatchAllHandler(FoundryHandler):
    """Any other path under the prefix: an OpenAI-shaped 404, after authentication."""

    @web.authenticated
    @authorized
    async def get(self, **_path: Any) -> None:
        raise web.HTTPError(404)

    post = put = patch = delete = head = get
