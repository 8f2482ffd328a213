"""One notebook's state: the backend in use, the active model and the conversation.

The magics, the widgets and the `foundry_jupyter.chat()` helper share one `Session`, so the chat
widget and the `%%foundry` cells always agree on the model, the backend and the history.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine.types import Delta, GenerationParams, Message, ResponseFormat
from ..errors import FoundryError
from .backends import Backend, ModelInfo, Progress, choose_backend
from .parsing import ChatOptions
from .results import ChatResult
from .streaming import MarkdownStream, TextStream, consume


class NoModel(FoundryError):
    code = "no_model"


@dataclass
class Conversation:
    messages: list[Message] = field(default_factory=list)

    def with_system(self, system: str | None) -> None:
        if not system:
            return
        if self.messages and self.messages[0].get("role") == "system":
            self.messages[0] = {"role": "system", "content": system}
        else:
            self.messages.insert(0, {"role": "system", "content": system})

    @property
    def turns(self) -> int:
        return sum(1 for m in self.messages if m.get("role") == "user")


class Session:
    def __init__(self, backend: str = "auto", default_model: str = "", settings: Any = None) -> None:
        self.backend_choice = backend
        self.default_model = default_model
        self.settings = settings
        self.active_model: str | None = None
        self.conversation = Conversation()
        self._backend: Backend | None = None
        self._lock = threading.RLock()

    @property
    def backend(self) -> Backend:
        with self._lock:
            if self._backend is None:
                self._backend = choose_backend(self.backend_choice, self.settings)
            return self._backend

    @property
    def backend_started(self) -> bool:
        return self._backend is not None

    def set_backend(self, which: str) -> Backend:
        """Switch where models run; the conversation stays, the models loaded by the old one go."""
        with self._lock:
            new = choose_backend(which, self.settings)
            old, self._backend = self._backend, new
            self.backend_choice = which
            if old is not None and old is not new:
                old.close()
            return new

    def model_name(self, requested: str | None = None) -> str:
        name = requested or self.active_model or self.default_model
        if not name:
            raise NoModel(
                "no model chosen: name one (%%foundry tiny), or %foundry use <model>, "
                "or %config FoundryMagics.default_model = '<model>'"
            )
        return name

    def activate(self, name: str, progress: Progress | None = None) -> ModelInfo:
        info = self.backend.load(name, progress)
        self.active_model = info.id
        return info

    def use(self, name: str) -> dict[str, Any]:
        entry = self.backend.resolve(name)
        self.active_model = str(entry.get("name") or entry.get("id") or name)
        return entry

    def reset(self) -> None:
        self.conversation = Conversation()

    def chat(
        self,
        prompt: str,
        options: ChatOptions,
        *,
        defaults: GenerationParams | None = None,
        sink: MarkdownStream | TextStream | None = None,
        cancel: threading.Event | None = None,
        progress: Progress | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> ChatResult:
        """Send `prompt` as the next user message; the answer joins the conversation."""
        if not prompt.strip():
            raise FoundryError("the message is empty: write it in the cell body")
        name = self.model_name(options.model)
        if options.new:
            self.reset()
        info = self.activate(name, progress)
        conversation = self.conversation
        conversation.with_system(options.system)
        params = _params(options, defaults or GenerationParams())
        backend = self.backend
        cancel = cancel or threading.Event()
        dropped = 0
        while True:
            messages = [*conversation.messages, {"role": "user", "content": prompt}]
            try:
                stream = backend.stream_chat(info.id, messages, params, cancel)
                break
            except FoundryError as err:
                # The notebook owns this history: keep the system prompt, drop the oldest turns to fit.
                if err.code != "context_length_exceeded" or not _drop_oldest_turn(conversation.messages):
                    raise
                dropped += 1
        if dropped:
            turns = f"{dropped} oldest turn{'s' if dropped > 1 else ''}"
            print(f"(the conversation outgrew the model's context: dropped its {turns})")

        def make_result(text: str, last: Delta | None) -> ChatResult:
            return ChatResult(
                text=text,
                model=stream.model.id,
                execution_provider=stream.model.execution_provider,
                usage=last.usage if last else None,
                finish_reason=last.finish_reason if last else None,
                backend=backend.name,
            )

        result = consume(stream.deltas, sink, make_result, on_text, cancel)
        # What the user saw joins the history, a cut-short answer included.
        conversation.messages[:] = [*messages, {"role": "assistant", "content": result.text}]
        return result

    def close(self) -> None:
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None


def _drop_oldest_turn(messages: list[Message]) -> bool:
    """Remove the first user message after the system prompt and the replies up to the next one."""
    start = next((i for i, m in enumerate(messages) if m.get("role") != "system"), None)
    if start is None:
        return False
    end = next(
        (i for i in range(start + 1, len(messages)) if messages[i].get("role") == "user"), len(messages)
    )
    del messages[start:end]
    return True


def _params(options: ChatOptions, base: GenerationParams) -> GenerationParams:
    fmt = ResponseFormat("json_schema", schema=options.json_schema) if options.json_schema else None
    return GenerationParams(
        max_tokens=options.max_tokens if options.max_tokens is not None else base.max_tokens,
        temperature=options.temperature if options.temperature is not None else base.temperature,
        top_p=options.top_p if options.top_p is not None else base.top_p,
        top_k=base.top_k,
        seed=options.seed if options.seed is not None else base.seed,
        stop=base.stop,
        response_format=fmt or base.response_format,
        thinking=options.thinking if options.thinking is not None else base.thinking,
    )
