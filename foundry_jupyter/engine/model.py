"""`ChatModel`: one loaded model folder, answering chat and text prompts with streaming.

Requests go through og's `Engine` (batched, driven by one owner thread, see `scheduler`). og.Generator
runs a request in the caller's own thread where the Engine cannot or should not:
- a seeded sampled request (0.18's static-batching Engine rejects per-turn seeds);
- a request arriving while a static batch runs (it would wait for the whole batch);
- a follow-up whose history a held og.Generator already has (see `conversations`);
- a model the Engine refuses, or a request the Engine failed before streaming anything.
Greedy text is the same on both paths, batched or not.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty as _Empty
from typing import Any

from foundry_jupyter.config import DEFAULT_MAX_TOKENS
from foundry_jupyter.engine import tools
from foundry_jupyter.engine.conversations import HEADROOM_TOKENS, GeneratorPool, HeldGenerator
from foundry_jupyter.engine.hardware import (
    cpu_threads,
    normalize_provider,
    provider_info,
    provider_status,
    usable_providers,
)
from foundry_jupyter.engine.scheduler import EngineScheduler, Job, Sampling
from foundry_jupyter.engine.stops import StopFilter
from foundry_jupyter.engine.types import Completion, Delta, FinishReason, GenerationParams, Message, Usage
from foundry_jupyter.errors import (
    ContextLengthExceeded,
    FoundryError,
    InvalidRequest,
    ModelNotFound,
    ProviderUnavailable,
)

_ROLES = {"system", "user", "assistant", "tool", "developer"}
_POLL_S = 0.05
# Compact JSON: a small model under a grammar that allows free whitespace can spend its whole budget
# on it. The caller's own "x-guidance" settings win.
_COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_OG_FINISH: dict[str, FinishReason] = {
    "EOS": "stop",
    "STOP_STRING": "stop",
    "MAX_GENERATED_TOKENS": "length",
    "MAX_SESSION_TOKENS": "length",
    "CANCELLED": "cancelled",
    "FAILED": "error",
}


ENGINE = "og.Engine"
GENERATOR = "og.Generator"


class DeltaStream(Iterator[Delta]):
    """The deltas of one generation; `backend` says which og API produced them."""

    def __init__(self) -> None:
        self.backend = ""
        self._inner: Iterator[Delta] = iter(())

    def set(self, inner: Iterator[Delta]) -> None:
        self._inner = inner

    @property
    def inner(self) -> Iterator[Delta]:
        return self._inner

    def __next__(self) -> Delta:
        return next(self._inner)

    def close(self) -> None:
        """Stop generating (what leaving a `for` loop early does too, once the stream is dropped)."""
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()

    def __del__(self) -> None:
        self.close()


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
        self._tokenizer = tokenizer
        self._tok_lock = threading.Lock()
        model_cfg = config.get("model", {})
        search = config.get("search", {})
        limits = [v for v in (model_cfg.get("context_length"), search.get("max_length")) if v]
        self.context_length: int = int(min(limits)) if limits else 4096
        self._default_do_sample = bool(search.get("do_sample", False))
        self._default_temperature = search.get("temperature")
        eos = model_cfg.get("eos_token_id", [])
        self._eos = set(eos if isinstance(eos, list) else [eos])
        tokenizer_config = _tokenizer_config(path)
        self._has_template = (path / "chat_template.jinja").is_file() or bool(
            tokenizer_config.get("chat_template")
        )
        # og's tokenizer never adds BOS itself: chat templates write it, but a plain text prompt needs it
        # added here when the tokenizer asks for one (Llama 2, Mistral; not SmolLM2 or GPT-2 vocabularies).
        bos = model_cfg.get("bos_token_id")
        wants_bos = tokenizer_config.get("add_bos_token")
        self._text_bos = bos if isinstance(bos, int) and wants_bos else None
        self._max_conversations = max_conversations
        self._generators = GeneratorPool(max_conversations)
        self._scheduler: EngineScheduler | None = None
        self.engine_error: str | None = None
        if use_engine:
            try:
                # Without engine.dynamic_batching (a paged KV cache) og 0.18 batches statically.
                static = not config.get("engine", {}).get("dynamic_batching")
                self._scheduler = EngineScheduler(
                    og_model, max_held=max_conversations, static=static, name=f"engine:{model_id}"
                )
            except Exception as exc:  # e.g. a model-managed KV cache: og.Generator serves it instead
                self.engine_error = str(exc)
        self._closed = False
        _track(self)

    # ---- loading -----------------------------------------------------------------------------
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
        config_file = path / "genai_config.json"
        if not config_file.is_file():
            raise ModelNotFound(f"No model at {path}: genai_config.json is missing.", param="model")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidRequest(f"Cannot read {config_file}: {exc}", param="model") from exc
        declared = _declared_provider(config)
        short = normalize_provider(ep) if ep else declared
        status = provider_status(short)
        if not status.usable:
            usable = ", ".join(usable_providers())
            raise ProviderUnavailable(
                f"Execution provider '{short}' is not usable on this machine: {status.note}. "
                f"Usable here: {usable}.",
                param="ep",
            )

        import onnxruntime_genai as og

        try:
            og_config = og.Config(str(path))
            threads = set_engine_threads(og_config, config, short)
            if ep is not None:
                og_config.clear_providers()
                og_name = provider_info(short).og_name
                if og_name:
                    og_config.append_provider(og_name)
            og_model = og.Model(og_config)
            tokenizer = og.Tokenizer(og_model)
        except Exception as exc:
            raise FoundryError(
                f"Could not load the model at {path} on {short}: {exc}", param="model"
            ) from exc
        return cls(
            path,
            og_model,
            tokenizer,
            model_id=model_id or path.name,
            execution_provider=short,
            config=config,
            use_engine=use_engine,
            max_conversations=max_conversations,
            cpu_threads=threads,
        )

    def close(self) -> None:
        """Stop the engine thread and release the model."""
        if self._closed:
            return
        self._closed = True
        if self._scheduler is not None:
            self._scheduler.close()
        self._scheduler = None
        self._generators.clear()
        self._tokenizer = None
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
        return self._scheduler is not None

    @property
    def held_conversations(self) -> int:
        return (self._scheduler.held_conversations if self._scheduler else 0) + len(self._generators)

    # ---- tokens ------------------------------------------------------------------------------
    def render_chat(self, messages: list[Message], tool_plan: tools.ToolPlan | None = None) -> str:
        """The prompt text the chat template makes of `messages`, ending where the answer begins.

        Tool calls and results in the history are rendered as text; `tool_plan` adds its tools.
        """
        normalized = _normalize_messages(tools.render_messages(messages, tool_plan or tools.NO_TOOLS))
        if not self._has_template:
            return "".join(f"{m['role']}: {m['content']}\n" for m in normalized) + "assistant: "
        self._check_open()
        try:
            with self._tok_lock:
                return self._tokenizer.apply_chat_template(json.dumps(normalized), add_generation_prompt=True)
        except Exception as exc:
            raise InvalidRequest(f"The chat template could not format these messages: {exc}") from exc

    def encode(self, text: str) -> list[int]:
        self._check_open()
        with self._tok_lock:
            return [int(t) for t in self._tokenizer.encode(text)]

    def encode_chat(self, messages: list[Message], tool_plan: tools.ToolPlan | None = None) -> list[int]:
        return self.encode(self.render_chat(messages, tool_plan))

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
        ids = self.encode_chat(messages, tool_plan)
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
        if tool_plan.active:
            out.set(tools.with_tool_calls(out.inner, tool_plan))
        return out

    def complete_chat(
        self,
        messages: list[Message],
        params: GenerationParams | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        return self._collect(self.stream_chat(messages, params, cancel))

    def stream_text(
        self, prompt: str, params: GenerationParams | None = None, cancel: threading.Event | None = None
    ) -> DeltaStream:
        if not isinstance(prompt, str) or not prompt:
            raise InvalidRequest("The prompt must be a non-empty string.", param="prompt")
        ids = self.encode(prompt)
        if self._text_bos is not None and ids[:1] != [self._text_bos]:
            ids.insert(0, self._text_bos)
        return self._stream(ids, params or GenerationParams(), cancel)

    def complete_text(
        self, prompt: str, params: GenerationParams | None = None, cancel: threading.Event | None = None
    ) -> Completion:
        return self._collect(self.stream_text(prompt, params, cancel))

    def _collect(self, deltas: Iterator[Delta]) -> Completion:
        parts: list[str] = []
        last: Delta | None = None
        for delta in deltas:
            parts.append(delta.text)
            last = delta
        assert last is not None and last.finish_reason is not None and last.usage is not None
        backend = deltas.backend if isinstance(deltas, DeltaStream) else ""
        return Completion(
            text="".join(parts),
            finish_reason=last.finish_reason,
            usage=last.usage,
            model=self.model_id,
            execution_provider=self.execution_provider,
            extra={"backend": backend},
            tool_calls=last.tool_calls,
        )

    def _stream(
        self,
        ids: list[int],
        params: GenerationParams,
        cancel: threading.Event | None,
        forced_guidance: tuple[str, str] | None = None,
    ) -> DeltaStream:
        # Validate before the first next(): errors surface at the call, not mid-stream.
        self._check_open()
        max_new = self._max_new(len(ids), params)
        sampling = self._sampling(params)
        guidance = forced_guidance or _guidance(params)
        stops = _stops(params)
        out = DeltaStream()
        reusable = not sampling.do_sample and guidance is None and self._max_conversations > 0
        taken = None
        if reusable and not (
            self._scheduler is not None and self._scheduler.holds_prefix_of(ids, len(ids) + max_new)
        ):
            # Leaving the Engine's batching is worth it when a held generator spares half the prompt.
            taken = self._generators.take(ids, len(ids) + max_new, min_fraction=0.5)
        claim = None
        scheduler = self._scheduler
        if (
            taken is None
            and scheduler is not None
            and scheduler.alive
            and not scheduler.holds_prefix_of(ids, len(ids) + max_new)
        ):
            # Nothing else runs: og.Generator starts now, where the Engine would gather a batch of one.
            claim = scheduler.claim_idle()
        if taken is None and claim is None and self._route_to_engine(ids, max_new, sampling):
            assert self._scheduler is not None
            # Room for a follow-up turn, without reserving the whole context for every request.
            session = min(self.context_length, len(ids) + max_new + HEADROOM_TOKENS)
            job = Job(ids=ids, max_new=max_new, sampling=sampling, guidance=guidance, session_tokens=session)
            self._scheduler.submit(job)
            self._wait_started(job)
            out.backend = ENGINE
            out.set(self._engine_deltas(job, stops, cancel, (ids, max_new, sampling, guidance), out))
        else:
            out.backend = GENERATOR
            try:
                inner = self._generator_deltas(ids, max_new, sampling, guidance, stops, cancel, taken)
            except BaseException:
                if claim is not None:
                    claim.release()
                raise
            out.set(claim.track(inner) if claim is not None else inner)
        return out

    def _wait_started(self, job: Job) -> None:
        """Wait until the engine has taken the job, so a request it rejects fails at the call."""
        while not job.started.wait(_POLL_S):
            if self._scheduler is None or not self._scheduler.alive:
                return  # the stream reports it
        if job.start_error is not None and _is_request_error(job.start_error):
            raise _as_foundry_error(job.start_error)

    def _route_to_engine(self, ids: list[int], max_new: int, sampling: Sampling) -> bool:
        scheduler = self._scheduler
        if scheduler is None or not scheduler.alive:
            return False
        if sampling.do_sample and sampling.seed is not None:
            return False  # og 0.18's static-batching Engine has no per-request seed
        if scheduler.holds_prefix_of(ids, len(ids) + max_new):
            return True  # the Engine holds this conversation's cache
        # A statically batched Engine makes a request that arrives mid-batch wait for the whole batch;
        # og.Generator starts it now instead.
        return not (scheduler.static and scheduler.batch_running)

    def _max_new(self, prompt_len: int, params: GenerationParams) -> int:
        if params.max_tokens is not None and (
            not isinstance(params.max_tokens, int) or params.max_tokens < 1
        ):
            raise InvalidRequest("max_tokens must be a positive integer.", param="max_tokens")
        room = self.context_length - prompt_len
        if room < 1:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.context_length} tokens, but the prompt has "
                f"{prompt_len} tokens. Shorten the messages.",
                param="messages",
            )
        wanted = params.max_tokens if params.max_tokens is not None else DEFAULT_MAX_TOKENS
        return min(wanted, room)

    def _sampling(self, params: GenerationParams) -> Sampling:
        t, top_p, top_k = params.temperature, params.top_p, params.top_k
        if t is not None and not 0 <= t <= 2:
            raise InvalidRequest("temperature must be between 0 and 2.", param="temperature")
        if top_p is not None and not 0 < top_p <= 1:
            raise InvalidRequest("top_p must be greater than 0 and at most 1.", param="top_p")
        if top_k is not None and top_k < 0:
            raise InvalidRequest("top_k must be zero or positive.", param="top_k")
        if t is None:
            do_sample, t = self._default_do_sample, self._default_temperature
        else:
            do_sample = t > 0
        return Sampling(
            do_sample=do_sample,
            temperature=float(t) if do_sample and t is not None else None,
            top_p=top_p,
            top_k=top_k,
            seed=params.seed,
        )

    def _engine_deltas(
        self,
        job: Job,
        stops: tuple[str, ...],
        cancel: threading.Event | None,
        retry: tuple[Any, ...],
        out: DeltaStream,
    ) -> Iterator[Delta]:
        prompt_len = len(job.ids)
        with self._tok_lock:
            stream = self._tokenizer.create_stream()
        text_filter = StopFilter(stops)
        count = 0
        finish: FinishReason | None = None
        done = False
        try:
            while True:
                try:
                    event = job.events.get(timeout=_POLL_S)
                except _Empty:
                    if cancel is not None and cancel.is_set():
                        job.cancel.set()
                    if self._scheduler is None or not self._scheduler.alive:
                        event = ("error", RuntimeError("the generation engine stopped"))
                    else:
                        continue
                kind = event[0]
                if kind == "error":
                    done = True
                    self._check_open()
                    if count == 0 and not _is_request_error(event[1]):
                        # Nothing streamed yet: og.Generator can still answer it.
                        out.backend = GENERATOR
                        yield from self._generator_deltas(*retry, stops, cancel)
                        return
                    raise _as_foundry_error(event[1])
                if kind == "done":
                    done = True
                    if finish is None:
                        finish = _OG_FINISH.get(event[1], "stop")
                    usage = Usage(prompt_tokens=prompt_len, completion_tokens=count, cached_tokens=job.cached)
                    yield Delta(
                        text="" if text_filter.stopped else text_filter.flush(),
                        finish_reason=finish,
                        usage=usage,
                    )
                    return
                if finish is not None:  # already stopped or cancelled: the turn is winding down
                    continue
                count += 1
                piece = text_filter.feed(stream.decode(event[1]))
                if text_filter.stopped:
                    finish = "stop"
                    job.cancel.set()
                elif cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    job.cancel.set()
                if piece:
                    yield Delta(text=piece)
        finally:
            if not done:  # the consumer left early: stop generating for nobody, and wait for that
                job.cancel.set()
                _drain(job, self._scheduler)

    def _generator_deltas(
        self,
        ids: list[int],
        max_new: int,
        sampling: Sampling,
        guidance: tuple[str, str] | None,
        stops: tuple[str, ...],
        cancel: threading.Event | None,
        taken: tuple[HeldGenerator, int] | None = None,
    ) -> Iterator[Delta]:
        import numpy as np
        import onnxruntime_genai as og

        # Greedy, unguided answers can continue a held generator (the text is the same as cold).
        reusable = not sampling.do_sample and guidance is None and self._max_conversations > 0
        needed = len(ids) + max_new
        if taken is None and reusable:
            taken = self._generators.take(ids, needed)
        generator, cached = None, 0
        if taken is not None:
            held, cached = taken
            try:
                held.generator.rewind_to(cached)
                held.generator.append_tokens(np.asarray(ids[cached:], dtype=np.int32))
                generator, max_length = held.generator, held.max_length
            except Exception:  # a state og will not continue from: answer cold instead
                generator, cached = None, 0
        try:
            if generator is None:
                max_length = min(self.context_length, needed + HEADROOM_TOKENS) if reusable else needed
                params = og.GeneratorParams(self._og_model)
                options: dict[str, Any] = {"max_length": max_length, "do_sample": sampling.do_sample}
                if sampling.do_sample:
                    for key in ("temperature", "top_p", "top_k"):
                        value = getattr(sampling, key)
                        if value is not None:
                            options[key] = value
                    if sampling.seed is not None:
                        options["random_seed"] = int(sampling.seed) & 0x7FFFFFFF
                params.set_search_options(**options)
                if guidance is not None:
                    params.set_guidance(*guidance)
                generator = og.Generator(self._og_model, params)
                generator.append_tokens(np.asarray(ids, dtype=np.int32))
        except Exception as exc:
            raise _as_foundry_error(exc) from exc
        with self._tok_lock:
            stream = self._tokenizer.create_stream()
        after = (lambda: self._hold_generator(generator, max_length)) if reusable else None
        return self._generator_loop(generator, stream, len(ids), cached, max_new, stops, cancel, after)

    def _hold_generator(self, generator: Any, max_length: int) -> None:
        sequence = [int(t) for t in generator.get_sequence(0)]
        if len(sequence) < max_length and not self._closed:
            self._generators.put(HeldGenerator(generator, sequence, max_length))

    def _generator_loop(
        self,
        generator: Any,
        stream: Any,
        prompt_len: int,
        cached: int,
        max_new: int,
        stops: tuple[str, ...],
        cancel: threading.Event | None,
        after: Callable[[], None] | None,
    ) -> Iterator[Delta]:
        text_filter = StopFilter(stops)
        count = 0
        finish: FinishReason = "length"
        complete = False
        try:
            while count < max_new:
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if generator.is_done():
                    finish = "stop"
                    break
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                if token in self._eos:
                    finish = "stop"
                    break
                count += 1
                piece = text_filter.feed(stream.decode(token))
                if piece:
                    yield Delta(text=piece)
                if text_filter.stopped:
                    finish = "stop"
                    break
            complete = True
        finally:
            if after is not None and complete:
                after()  # held for a follow-up only when its state is whole
        usage = Usage(prompt_tokens=prompt_len, completion_tokens=count, cached_tokens=cached)
        yield Delta(text=text_filter.flush(), finish_reason=finish, usage=usage)

    def _check_open(self) -> None:
        if self._closed:
            raise FoundryError(f"The model {self.model_id} has been unloaded.", code="model_not_loaded")


# ---- helpers ---------------------------------------------------------------------------------


_LIVE: weakref.WeakSet[ChatModel] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _track(model: ChatModel) -> None:
    """Close every model at interpreter exit: og aborts the process if its Engine outlives Python."""
    with _LIVE_LOCK:
        if not _LIVE:
            atexit.unregister(_close_all)
            atexit.register(_close_all)
        _LIVE.add(model)


def _close_all() -> None:
    with _LIVE_LOCK:
        models = list(_LIVE)
    for model in models:
        with contextlib.suppress(Exception):  # exiting anyway: close the others
            model.close()


def _drain(job: Job, scheduler: EngineScheduler | None, timeout_s: float = 10.0) -> None:
    """Wait (bounded) until the engine has finished a cancelled job, dropping its remaining tokens."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and scheduler is not None and scheduler.alive:
        try:
            if job.events.get(timeout=_POLL_S)[0] in ("done", "error"):
                return
        except _Empty:
            continue


def engine_threads(config: dict[str, Any], provider: str) -> int | None:
    """Operator threads a model runs with: the folder's own `intra_op_num_threads`, else on CPU every
    physical core (`hardware.cpu_threads`), else onnxruntime's default (None)."""
    own = _session_options(config).get("intra_op_num_threads")
    if own or provider != "cpu":
        return own
    return cpu_threads()


def set_engine_threads(og_config: Any, config: dict[str, Any], provider: str) -> int | None:
    """Give `og_config` (of the folder whose genai_config.json is `config`) the engine's operator
    threads; returns them."""
    threads = engine_threads(config, provider)
    if threads != _session_options(config).get("intra_op_num_threads"):
        overlay = {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
        og_config.overlay(json.dumps(overlay))
    return threads


def _session_options(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("model", {}).get("decoder", {}).get("session_options", {}) or {}


def _declared_provider(config: dict[str, Any]) -> str:
    """The provider a genai_config.json asks for (its first provider_options entry), else CPU."""
    options = (
        config.get("model", {}).get("decoder", {}).get("session_options", {}).get("provider_options", [])
    )
    for entry in options if isinstance(options, list) else []:
        if isinstance(entry, dict) and entry:
            try:
                return normalize_provider(next(iter(entry)))
            except InvalidRequest:
                continue
    return "cpu"


def _tokenizer_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _normalize_messages(messages: list[Message]) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list.", param="messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(
                f"messages[{i}] must be an object with a role and content.", param="messages"
            )
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}, not {role!r}.",
                param="messages",
            )
        content = message.get("content")
        if content is None:
            content = ""
        elif isinstance(content, list):  # OpenAI content parts: keep the text ones
            texts = []
            for part in content:
                if (
                    not isinstance(part, dict)
                    or part.get("type") != "text"
                    or not isinstance(part.get("text"), str)
                ):
                    raise InvalidRequest(
                        f"messages[{i}].content: only text parts are supported.", param="messages"
                    )
                texts.append(part["text"])
            content = "".join(texts)
        elif not isinstance(content, str):
            raise InvalidRequest(f"messages[{i}].content must be a string.", param="messages")
        out.append({"role": "system" if role == "developer" else role, "content": content})
    return out


def _guidance(params: GenerationParams) -> tuple[str, str] | None:
    fmt = params.response_format
    if fmt is None or fmt.kind == "text":
        return None
    if fmt.kind in ("json_object", "json_schema"):
        schema = (
            dict(fmt.schema) if fmt.kind == "json_schema" and fmt.schema is not None else {"type": "object"}
        )
        if fmt.kind == "json_schema" and not isinstance(fmt.schema, dict):
            raise InvalidRequest(
                "response_format json_schema needs a schema object.", param="response_format"
            )
        schema.setdefault("x-guidance", _COMPACT_JSON)
        return "json_schema", json.dumps(schema)
    if fmt.kind in ("regex", "lark"):
        if not fmt.grammar:
            raise InvalidRequest(f"response_format {fmt.kind} needs a grammar.", param="response_format")
        return ("regex" if fmt.kind == "regex" else "lark_grammar"), fmt.grammar
    raise InvalidRequest(f"Unknown response_format type {fmt.kind!r}.", param="response_format")


def _stops(params: GenerationParams) -> tuple[str, ...]:
    stop = params.stop
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise InvalidRequest("stop must be up to 4 non-empty strings.", param="stop")
    return stops


def _is_request_error(exc: BaseException) -> bool:
    """An error caused by what was asked (a bad grammar), which another path would repeat."""
    return isinstance(exc, FoundryError) or any(
        word in str(exc).lower() for word in ("grammar", "guidance", "schema", "regex", "lark")
    )


def _as_foundry_error(exc: BaseException) -> FoundryError:
    if isinstance(exc, FoundryError):
        return exc
    text = str(exc)
    if _is_request_error(exc):
        return InvalidRequest(f"Invalid response_format: {text}", param="response_format")
    return FoundryError(f"Generation failed: {text}", status=500, code="generation_failed")
