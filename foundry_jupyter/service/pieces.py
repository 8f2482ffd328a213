"""What the chat and responses writers read from a generation, local (a runner) or remote (an engine)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator


class TextPieces:
    """A generation's pieces as they come: `parts()` yields `(reasoning, text)` pairs (subclasses),
    `pieces()` the answer's text alone."""

    def parts(self) -> AsyncGenerator[tuple[str, str], None]:
        raise NotImplementedError

    async def pieces(self) -> AsyncIterator[str]:
        """Yield the answer's text pieces (a reasoning model's thinking left out: see `parts`)."""
        parts = self.parts()
        try:
            async for _, text in parts:
                if text:
                    yield text
        finally:
            await parts.aclose()  # leaving early must close the call now, not at collection
