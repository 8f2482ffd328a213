"""`DeltaStream`, what `ChatModel.stream_*` return, and `collect`, which makes a `Completion` of one."""

from __future__ import annotations

from collections.abc import Iterator

from foundry_jupyter.engine.types import Completion, Delta

ENGINE = "og.Engine"
GENERATOR = "og.Generator"
SLOTS = "slots"  # continuous batching on onnxruntime directly (`slots`)


def _nothing() -> Iterator[Delta]:
    yield from ()


class Backend:
    """Which og API answers a stream. The generation that may switch it (the Engine handing a request
    to og.Generator) holds this, never the stream itself: a generation holding its own stream is a
    reference cycle, and a stream dropped unclosed would then go on generating until the garbage
    collector happened to run."""

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name


class DeltaStream(Iterator[Delta]):
    """The deltas of one generation; `backend` says which og API produced them. Dropping the last
    reference stops the generation, as `close()` does."""

    def __init__(self) -> None:
        self.label = Backend()
        self._inner: Iterator[Delta] = _nothing()

    @property
    def backend(self) -> str:
        return self.label.name

    @backend.setter
    def backend(self, name: str) -> None:
        self.label.name = name

    def set(self, inner: Iterator[Delta]) -> None:
        """`inner` must have `close()` (a generator does)."""
        self._inner = inner

    @property
    def inner(self) -> Iterator[Delta]:
        return self._inner

    def __next__(self) -> Delta:
        return next(self._inner)

    def close(self) -> None:
        """Stop generating (what leaving a `for` loop early does too, once the stream is dropped)."""
        self._inner.close()  # type: ignore[attr-defined]

    def __del__(self) -> None:
        self.close()


def collect(deltas: DeltaStream, model_id: str, execution_provider: str) -> Completion:
    parts: list[str] = []
    thoughts: list[str] = []
    last: Delta | None = None
    for delta in deltas:
        parts.append(delta.text)
        thoughts.append(delta.reasoning)
        last = delta
    assert last is not None and last.finish_reason is not None and last.usage is not None
    return Completion(
        text="".join(parts),
        finish_reason=last.finish_reason,
        usage=last.usage,
        model=model_id,
        execution_provider=execution_provider,
        extra={"backend": deltas.backend},
        tool_calls=last.tool_calls,
        reasoning="".join(thoughts),
    )
