"""`model run` on a remote engine's model: the engine answers directly, through the `openai` client.

The same surface as the local `ChatModel` that `model run` drives (`stream_chat`, `complete_chat`,
`execution_provider`, `close`), so the one-shot and interactive modes work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..engine.types import Completion, Delta, GenerationParams, Usage
from ..models.engines import DEVICE, EngineConfig, engine_error


class RemoteChat:
    def __init__(self, engine: EngineConfig, model: str) -> None:
        import openai

        self.engine = engine
        self.model = model
        self.execution_provider = f"{DEVICE} ({engine.name})"
        self._client = openai.OpenAI(
            base_url=engine.api_base,
            api_key=engine.key() or "none",
            max_retries=engine.retries,
            timeout=openai.Timeout(engine.first_byte_timeout, connect=engine.connect_timeout),
        )

    def stream_chat(self, messages: list[dict[str, Any]], params: GenerationParams) -> Iterator[Delta]:
        try:
            stream = self._client.chat.completions.create(
                model=self.model, messages=messages, stream=True, **_body(params)
            )
            with stream:
                for chunk in stream:
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            yield Delta(choice.delta.content)
        except Exception as err:
            raise engine_error(self.engine, err) from None

    def complete_chat(self, messages: list[dict[str, Any]], params: GenerationParams) -> Completion:
        try:
            answer = self._client.chat.completions.create(
                model=self.model, messages=messages, **_body(params)
            )
        except Exception as err:
            raise engine_error(self.engine, err) from None
        choice = answer.choices[0]
        usage = answer.usage
        return Completion(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason or "stop",
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(0, 0),
        )

    def close(self) -> None:
        self._client.close()


def _body(params: GenerationParams) -> dict[str, Any]:
    wanted = {"max_tokens": params.max_tokens, "temperature": params.temperature, "seed": params.seed}
    return {k: v for k, v in wanted.items() if v is not None}
