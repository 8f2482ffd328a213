"""Per-request timings and the summaries every system's figures are reduced to."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class RequestTiming:
    """One streamed request, times in seconds from the moment it was sent."""

    ttft: float  # first non-empty content piece
    total: float  # last byte of the response
    completion_tokens: int
    prompt_tokens: int = 0
    cached_tokens: int = 0
    text: str = ""

    @property
    def decode_tps(self) -> float:
        """Tokens after the first over the time after the first: the steady decode rate."""
        span = self.total - self.ttft
        return (self.completion_tokens - 1) / span if span > 0 and self.completion_tokens > 1 else math.nan


@dataclass
class LoadResult:
    """`clients` concurrent streams, each sending requests back to back."""

    system: str
    model: str
    clients: int
    wall_s: float
    requests: list[RequestTiming] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ttfts = [r.ttft * 1000 for r in self.requests]
        tokens = sum(r.completion_tokens for r in self.requests)
        decode = [r.decode_tps for r in self.requests if not math.isnan(r.decode_tps)]
        # prompt tokens over the time to the first token: the prompt reading speed of a lone request
        reading = [r.prompt_tokens / r.ttft for r in self.requests if r.prompt_tokens and r.ttft > 0]
        return {
            "system": self.system,
            "model": self.model,
            "clients": self.clients,
            "requests": len(self.requests),
            "errors": len(self.errors),
            "ttft_p50_ms": percentile(ttfts, 50),
            "ttft_p90_ms": percentile(ttfts, 90),
            # per stream, averaged: what one user sees while the others run
            "decode_tps": sum(decode) / len(decode) if decode else math.nan,
            # all tokens of all streams over the wall time: the machine's throughput
            "e2e_tps": tokens / self.wall_s if self.wall_s > 0 else math.nan,
            "prompt_tokens": percentile([r.prompt_tokens for r in self.requests], 50),
            "prompt_tps": percentile(reading, 50),
        }


@dataclass
class TurnResult:
    """Second turn of a chat (history resent) against a cold prompt of the same length."""

    system: str
    model: str
    second_turn_ttft_ms: list[float] = field(default_factory=list)
    cold_ttft_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cold_prompt_tokens: int = 0
    cached_tokens: int = 0

    def summary(self) -> dict[str, Any]:
        warm = percentile(self.second_turn_ttft_ms, 50)
        cold = percentile(self.cold_ttft_ms, 50)
        return {
            "system": self.system,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "cold_prompt_tokens": self.cold_prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "second_turn_ttft_p50_ms": warm,
            "cold_ttft_p50_ms": cold,
            "ratio": warm / cold if cold and not math.isnan(cold) else math.nan,
        }


def as_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)
