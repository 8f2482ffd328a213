"""`ChatModel`: one loaded model folder, answering chat and text prompts with streaming.

Requests go through one batching owner thread (`engine_path`): for a graph `slot_model` can run (the
GGUF importer's, on CPU) our own continuous batching (`slots`), else og's `Engine` (`scheduler`).
og.Generator (`generator_path`) runs a request in the caller's own thread where the Engine cannot or
should not:
- a request with a grammar on `slots`, a seeded sampled one on og's Engine (0.18 rejects per-turn seeds);
- a request arriving while a static batch runs (it would wait for the whole batch);
- a follow-up whose history a held og.Generator already has (see `conversations`);
- a model the Engine refuses, or a request the Engine failed before streaming anything.
Greedy text is the same on both paths, batched or not. Parameters are checked in `params`, prompts
made in `prompts`, the folder read in `folder`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from foundry_jupyter.engine import params as limits
from foundry_jupyter.engine import reasoning, tools
from foundry_jupyter.engine.engine_path import EnginePath
from foundry_jupyter.engine.fim import read_fim_tokens
from foundry_jupyter.engine.folder import FolderSettings, engine_threads, open_folder, set_engine_threads
from foundry_jupyter.engine.generator_path import GeneratorPath, Taken
from foundry_jupyter.engine.lifetime import close_at_exit
from foundry_jupyter.engine.load import IdleClaim
from foundry_jupyter.engine.params import Generation
from foundry_jupyter.engine.prompts import Prompts
from foundry_jupyter.engine.scheduler import EngineScheduler
from foundry_jupyter.engine.slot_model import slot_graph
from foundry_jupyter.engine.slots import SlotScheduler
from foundry_jupyter.engine.stream import ENGINE, GENERATOR, SLOTS, DeltaStream, collect
from foundry_jupyter.engine.types import Completion, Delta, GenerationParams, Message
from foundry_jupyter.errors import FoundryError, InvalidRequest

log = logging.getLogger(__name__)

# The longest a request waits for a cancelled generation to finish its last token and be held.
CANCELLED_WAIT_S = 1.0

# "0" keeps og's Engine for folders `slots` could run, "1" (the default) uses `slots` where it can.
SLOTS_ENV = "FOUNDRY_JUPYTER_SLOTS"

__all__ = ["ENGINE", "GENERATOR", "SLOTS", "ChatModel", "DeltaStream", "engine_threads", "set_engine_threads"]


class ChatModel:
    """A model folder loaded on one execution provider. Safe to use from many threads at once."""

    def __init__(
        self,
        path: Path,
        og_model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        execution_provider: str,
        config: dict[str, Any],
        use_engine: bool = True,
        max_conversations: int = 4,
        cpu_threads: int | None = None,
    ) -> None:
        self.path = path
        self.model_id = model_id
        self.execution_provider = execution_provider
        self.cpu_threads = cpu_threads  # operator threads (see `engine_threads`), when known
        self._og_model = og_model
        settings = FolderSettings.read(path, config)
        self.context_length: int = settings.context_length
        self._settings = settings
        self._prompts = Prompts(
            tokenizer,
            has_template=settings.has_template,
            text_bos=settings.text_bos,
            template=settings.chat_template,
            fim=read_fim_tokens(path),
        )
        self._generators = GeneratorPath(
            og_model,
            self._prompts,
            context_length=settings.context_length,
            eos=settings.eos,
            max_held=max_conversations,
        )
        self._engine: EnginePath | None = None
        self.engine_error: str | None = None
        if use_engine:
            try:
                scheduler = self._scheduler(config, max_conversations)
                self._engine = EnginePath(
                    scheduler, self._prompts, context_length=self.context_length, check_open=self._check_open
                )
            except Exception as exc:  # e.g. a model-managed KV cache: og.Generator serves it instead
                self.engine_error = str(exc)
        self._closed = False
        close_at_exit(self)

    def _scheduler(self, config: dict[str, Any], max_held: int) -> EngineScheduler | SlotScheduler:
        graph = None
        if self.execution_provider == "cpu" and _slots_wanted(config):
            graph = slot_graph(self.path, config)
        if graph is not None:
            try:
                return SlotScheduler(
                    graph,
                    eos=self._settings.eos,
                    max_length=self.context_length,
                    threads=self.cpu_threads or engine_threads(config, "cpu"),
                    max_held=max_held,
                    name=f"slots:{self.model_id}",
                )
            except Exception:  # a graph onnxruntime refuses alone: og's Engine may still run it
                log.exception("continuous batching is unavailable for %s", self.model_id)
        # Without engine.dynamic_batching (a paged KV cache) og 0.18 batches statically.
        static = not config.get("engine", {}).get("dynamic_batching")
        return EngineScheduler(
            self._og_model, max_held=max_held, static=static, name=f"engine:{self.model_id}"
        )

    # ---- lifetime ----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        ep: str | None = None,
        model_id: str | None = None,
        use_engine: bool = True,
        max_conversations: int = 4,
    ) -> ChatModel:
        """Load the model folder at `path` on execution provider `ep` (None: what the folder names).

        `use_engine=False` serves every request with og.Generator; `max_conversations` bounds the
        finished conversations held for reuse (0: none).
        """
        path = Path(path).expanduser()
        opened = open_folder(path, ep)
        return cls(
            path,
            opened.og_model,
            opened.tokenizer,
            model_id=model_id or path.name,
            execution_provider=opened.provider,
            config=opened.config,
            use_engine=use_engine,
            max_conversations=max_conversations,
            cpu_threads=opened.cpu_threads,
        )

    def close(self) -> None:
        """Stop the engine thread and release the model."""
        if self._closed:
            return
        self._closed = True
        if self._engine is not None:
            self._engine.scheduler.close()
        self._engine = None
        self._generators.close()
        self._prompts.close()
        self._og_model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> ChatModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def uses_engine(self) -> bool:
        return self._engine is not None

    @property
    def reasons(self) -> bool:
        """Whether this is a reasoning model (its chat template mentions `<think>`): its chat answers
        carry their thinking in `Delta.reasoning` / `Completion.reasoning`, apart from the answer."""
        return self._prompts.reasons

    @property
    def held_conversations(self) -> int:
        engine_held = self._engine.scheduler.held_conversations if self._engine is not None else 0
        return engine_held + self._generators.held

    # ---- tokens ------------------------------------------------------------------------------
    def render_chat(
        self, messages: list[Message], tool_plan: tools.ToolPlan | None = None, thinking: bool | None = None
    ) -> str:
        """The prompt text the chat template makes of `messages`, ending where the answer begins.

        Tool calls and results in the history are rendered as text; `tool_plan` adds its tools;
        `thinking` turns a reasoning model's thinking on or off where its template can.
        """
        self._check_open()
        return self._prompts.render_chat(messages, tool_plan, thinking)

    def encode(self, text: str) -> list[int]:
        self._check_open()
        return self._prompts.encode(text)

    def encode_chat(self, messages: list[Message], tool_plan: tools.ToolPlan | None = None) -> list[int]:
        return self.encode(self.render_chat(messages, tool_plan))

    def _encode_prompt(self, text: str, param: str) -> list[int]:
        """A generation prompt's tokens, refused unread when its length alone rules it out."""
        limits.check_prompt_chars(len(text), self.context_length, param)
        return self.encode(text)

    def count_tokens(self, messages: list[Message]) -> int:
        return len(self.encode_chat(messages))

    # ---- generation --------------------------------------------------------------------------
    def stream_chat(
        self,
        messages: list[Message],
        params: GenerationParams | None = None,
        cancel: threading.Event | None = None,
    ) -> DeltaStream:
        params = params or GenerationParams()
        tool_plan = tools.plan(params)
        prompt = self.render_chat(messages, tool_plan, params.thinking)
        ids = self._encode_prompt(prompt, "messages")
        forced = tools.guidance(tool_plan)
        try:
            out = self._stream(ids, params, cancel, forced)
        except InvalidRequest as exc:
            if forced is None or exc.param != "response_format":
                raise
            # The grammar came from the tools' parameter schemas, not from response_format.
            detail = exc.message.removeprefix("Invalid response_format: ")
            raise InvalidRequest(
                f"A tool's parameters schema cannot be used: {detail}", param="tools"
            ) from exc
        if self.reasons and not _answer_is_json(params, forced):
            # Before tool calls are looked for: a call belongs to the answer, not to the thinking.
            opened = reasoning.prompt_opens_thinking(prompt)
            out.set(reasoning.split_deltas(out.inner, thinking=opened, count_tokens=self._count_text))
        if tool_plan.active:
            out.set(tools.with_tool_calls(out.inner, tool_plan))
        return out

    def complete_chat(
        self,
        messages: list[Message],
        params: GenerationParams | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        return collect(self.stream_chat(messages, params, cancel), self.model_id, self.execution_provider)

    @property
    def fills_middle(self) -> bool:
        """Whether text prompts may carry a suffix (the tokenizer has fill-in-the-middle tokens)."""
        return self._prompts.fills_middle

    def stream_text(
        self,
        prompt: str,
        params: GenerationParams | None = None,
        cancel: threading.Event | None = None,
        *,
        suffix: str | None = None,
    ) -> DeltaStream:
        """Continue `prompt`; with a non-empty `suffix`, write what goes between the two (FIM), or raise
        InvalidRequest for a model without FIM tokens."""
        self._check_open()
        if isinstance(prompt, str):
            limits.check_prompt_chars(len(prompt) + len(suffix or ""), self.context_length, "prompt")
        ids = self._prompts.encode_fill(prompt, suffix) if suffix else self._prompts.encode_text(prompt)
        return self._stream(ids, params or GenerationParams(), cancel)

    def complete_text(
        self,
        prompt: str,
        params: GenerationParams | None = None,
        cancel: threading.Event | None = None,
        *,
        suffix: str | None = None,
    ) -> Completion:
        deltas = self.stream_text(prompt, params, cancel, suffix=suffix)
        return collect(deltas, self.model_id, self.execution_provider)

    def _stream(
        self,
        ids: list[int],
        params: GenerationParams,
        cancel: threading.Event | None,
        forced_guidance: tuple[str, str] | None = None,
    ) -> DeltaStream:
        """Pick the og API for one request and start it. Errors raise here, not mid-stream, so a
        server can still answer them with a 4xx."""
        self._check_open()
        gen = limits.prepare(
            ids,
            params,
            context_length=self.context_length,
            default_do_sample=self._settings.do_sample,
            default_temperature=self._settings.temperature,
            forced_guidance=forced_guidance,
            cancel=cancel,
        )
        engine, generators = self._engine, self._generators
        if generators.reuses(gen.sampling, gen.guidance):
            generators.wait_for_cancelled(CANCELLED_WAIT_S)
        engine_holds = engine is not None and engine.scheduler.holds_prefix_of(ids, gen.needed)
        taken: Taken | None = None
        if generators.reuses(gen.sampling, gen.guidance) and not engine_holds:
            # Leaving the Engine's batching is worth it when a held generator spares half the prompt.
            taken = generators.take_most_of(ids, gen.needed)
        claim: IdleClaim | None = None
        if taken is None and engine is not None and engine.scheduler.alive and not engine_holds:
            # Nothing else runs: og.Generator starts now, where the Engine would gather a batch of one.
            claim = engine.scheduler.claim_idle()
        out = DeltaStream()
        if taken is None and claim is None and engine is not None and engine.takes(gen):
            out.backend = engine.scheduler.backend
            out.set(engine.start(gen, out.label, fallback=lambda: self._fallback(gen)))
            return out
        out.backend = GENERATOR
        try:
            inner = generators.deltas(gen, taken)
        except BaseException:
            if claim is not None:
                claim.release()
            raise
        out.set(claim.track(inner) if claim is not None else inner)
        return out

    def _fallback(self, gen: Generation) -> Iterator[Delta]:
        """og.Generator's answer to a request the Engine failed before it streamed anything."""
        self._check_open()
        return self._generators.deltas(gen)

    def _count_text(self, text: str) -> int:
        return len(self._prompts.encode(text)) if not self._closed else 0

    def _check_open(self) -> None:
        if self._closed:
            raise FoundryError(f"The model {self.model_id} has been unloaded.", code="model_not_loaded")


def _slots_wanted(config: dict[str, Any]) -> bool:
    """`SLOTS_ENV` if set, else the folder config's `engine.slots`, else yes."""
    env = os.environ.get(SLOTS_ENV)
    if env is not None:
        return env.strip().lower() not in ("0", "false", "no", "off")
    return bool(config.get("engine", {}).get("slots", True))


def _answer_is_json(params: GenerationParams, forced: tuple[str, str] | None) -> bool:
    """A grammar that makes the whole output JSON leaves no room for thinking: nothing to split.
    (A regex or lark grammar may spell the thinking out, so its output is split.)"""
    kind = params.response_format.kind if params.response_format is not None else "text"
    return forced is not None or kind in ("json_object", "json_schema")
