"""Read a llama-family GGUF file: hyperparameters, tokenizer metadata and weights.

Weights come out in ONNX's row convention (`[out_features, in_features]`, the reverse of a GGUF
tensor's `shape`), with llama.cpp's rotary row permutation of Q and K undone. Q4_0, Q4_1 and Q4_K
linears can stay as their exact 4-bit blocks (`QuantLinear`); every other type is dequantized to
float32 (`quants` says which types and why).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InvalidRequest
from .architecture import ARCHITECTURES, SUPPORTED_ARCHITECTURES, Architecture
from .quants import BLOCK, KEPT_4BIT, SUPPORTED_TYPES, dequantize, expand_4bit, unpack_4bit, unsupported_type

# Rotary scalings the rotary caches reproduce: "llama3" and "longrope" ("su") come as per-frequency
# factor tensors (rope_freqs, rope_factors_long / _short).
ROPE_SCALINGS = ("none", "linear", "llama3", "longrope", "su")


class GGUFError(InvalidRequest):
    """A GGUF file that cannot be imported (unreadable, or a layout this importer does not support)."""

    code = "unsupported_model"


@dataclass(frozen=True)
class Hyperparams:
    architecture: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_length: int
    vocab_size: int
    rms_eps: float
    rope_theta: float
    rope_dim: int
    rope_linear_factor: float  # positions are divided by it ("linear" rope scaling); 1.0 when none
    name: str
    # LongRoPE (phi3 128k): rope_factors_short up to this many tokens, rope_factors_long beyond; 0: none.
    rope_original_context: int = 0
    rope_attn_factor: float = 1.0  # cos and sin are multiplied by it (LongRoPE's attention scaling)
    sliding_window: int = 0  # tokens a local layer attends to (itself included); 0: every layer global
    attention_scale: float = 0.0  # Q·K scale; 0 means 1/sqrt(head_dim)
    local_rope_theta: float = 0.0  # rotary base of the sliding-window layers; 0: rope_theta

    @property
    def arch(self) -> Architecture:
        return ARCHITECTURES[self.architecture]

    def is_local(self, layer: int) -> bool:
        """Whether `layer` attends only to the last `sliding_window` tokens."""
        pattern = self.arch.sliding_window_pattern
        return bool(self.sliding_window and pattern and (layer + 1) % pattern != 0)


@dataclass
class QuantLinear:
    """A 4-bit linear kept exactly: `W[n, k] = scale[n, b] * (q[n, k] - 8) + offset[n, b]`, b = k // 32.

    `packed` is MatMulNBits' layout `[N, blocks, 16]` (element 2j in the low nibble); `offset` is None for
    symmetric blocks (Q4_0).
    """

    packed: np.ndarray
    scale: np.ndarray
    offset: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        n, blocks, _ = self.packed.shape
        return n, blocks * BLOCK

    def rows(self, index: np.ndarray) -> QuantLinear:
        offset = None if self.offset is None else self.offset[index]
        return QuantLinear(self.packed[index], self.scale[index], offset)

    def dequantize(self) -> np.ndarray:
        return expand_4bit(self.packed, self.scale, self.offset)


Weight = np.ndarray | QuantLinear


class GGUFModel:
    """One GGUF file, opened memory-mapped."""

    def __init__(self, path: str | Path) -> None:
        import gguf

        self.path = Path(path)
        if not self.path.is_file():
            raise GGUFError(f"GGUF file not found: {self.path}")
        try:
            self._reader = gguf.GGUFReader(str(self.path))
        except Exception as exc:  # the reader raises bare ValueErrors/KeyErrors on corrupt files
            raise GGUFError(f"{self.path.name} is not a readable GGUF file: {exc}") from exc
        self._tensors = {t.name: t for t in self._reader.tensors}
        self.hparams = self._hyperparams()
        unsupported = unsupported_type(self._tensors)
        if unsupported is not None:
            raise GGUFError(
                f"{self.path.name}: tensor {unsupported[0]} has block type {unsupported[1]}, which is not "
                f"supported (supported: {', '.join(SUPPORTED_TYPES)})"
            )

    # --- metadata -----------------------------------------------------------------------------
    def field(self, key: str, default: Any = None) -> Any:
        field = self._reader.fields.get(key)
        if field is None:
            return default
        return field.contents()

    def _arch_field(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        arch = self.field("general.architecture")
        value = self.field(f"{arch}.{key}", default)
        if value is None and required:
            raise GGUFError(f"{self.path.name} lacks the metadata key {arch}.{key}")
        return value

    def _hyperparams(self) -> Hyperparams:
        arch = self.field("general.architecture")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise GGUFError(
                f"{self.path.name}: architecture {arch!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
            )
        hidden = int(self._arch_field("embedding_length", required=True))
        heads = int(self._arch_field("attention.head_count", required=True))
        kv_heads = int(self._arch_field("attention.head_count_kv", heads))
        head_dim = int(self._arch_field("attention.key_length", hidden // heads))
        tokens = self.field("tokenizer.ggml.tokens") or []
        vocab = int(
            self._arch_field("vocab_size", 0) or len(tokens) or self._tensor_rows("token_embd.weight")
        )
        rope_dim = int(self._arch_field("rope.dimension_count", head_dim))
        if rope_dim != head_dim:
            raise GGUFError(
                f"{self.path.name}: partial rotary embeddings ({rope_dim} of {head_dim}) are not supported"
            )
        scaling = self._arch_field("rope.scaling.type", "none")
        factor = float(self._arch_field("rope.scaling.factor", 1.0) or 1.0)
        if scaling not in ROPE_SCALINGS and factor != 1.0:
            raise GGUFError(
                f"{self.path.name}: rope scaling {scaling!r} is not supported (supported: "
                f"{', '.join(ROPE_SCALINGS)})"
            )
        layers = int(self._arch_field("block_count", required=True))
        long_rope = "rope_factors_long.weight" in self._tensors
        attention_scale = 0.0
        if arch == "gemma3" and layers == 62:
            # llama.cpp scales Gemma 3 27B's attention by its query_pre_attn_scalar, hidden / heads.
            attention_scale = (hidden / heads) ** -0.5
        return Hyperparams(
            architecture=arch,
            num_layers=layers,
            hidden_size=hidden,
            intermediate_size=int(self._arch_field("feed_forward_length", required=True)),
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            context_length=int(self._arch_field("context_length", 4096)),
            vocab_size=vocab,
            rms_eps=float(self._arch_field("attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta=float(self._arch_field("rope.freq_base", 10000.0)),
            rope_dim=rope_dim,
            rope_linear_factor=factor if scaling == "linear" else 1.0,
            name=str(self.field("general.name", self.path.stem)),
            rope_original_context=int(self._arch_field("rope.scaling.original_context_length", 0))
            if long_rope
            else 0,
            rope_attn_factor=float(self._arch_field("rope.scaling.attn_factor", 1.0)) if long_rope else 1.0,
            sliding_window=int(self._arch_field("attention.sliding_window", 0) or 0)
            if ARCHITECTURES[arch].sliding_window_pattern
            else 0,
            attention_scale=attention_scale,
            local_rope_theta=float(
                self._arch_field("rope.freq_base_swa", 0.0) or ARCHITECTURES[arch].local_rope_theta
            ),
        )

    # --- tensors ------------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return name in self._tensors

    def _tensor(self, name: str) -> Any:
        try:
            return self._tensors[name]
        except KeyError:
            raise GGUFError(f"{self.path.name} lacks the tensor {name}") from None

    def _tensor_rows(self, name: str) -> int:
        return int(self._tensor(name).shape[-1]) if name in self._tensors else 0

    def tensor_type(self, name: str) -> str:
        return self._tensor(name).tensor_type.name

    def dense(self, name: str) -> np.ndarray:
        """The tensor as float32 in numpy's (row-major, reversed GGUF shape) layout."""
        t = self._tensor(name)
        return dequantize(t.data, t.tensor_type)

    def linear(self, name: str, *, keep_int4: bool, permute_heads: int = 0) -> Weight:
        """A linear's weight `[N, K]`: exact 4-bit blocks when asked and possible, else float32.

        `permute_heads` (heads for Q, kv heads for K) undoes llama.cpp's rotary row order where the
        converter applied it.
        """
        t = self._tensor(name)
        exact = keep_int4 and t.tensor_type.name in KEPT_4BIT
        weight: Weight = QuantLinear(*unpack_4bit(t.data, t.tensor_type.name)) if exact else self.dense(name)
        if permute_heads and self.hparams.arch.permuted_qk:
            n = weight.shape[0]
            # GGUF row (h, i, j) holds original row (h, j, i) of each head's [2, head_dim/2] halves.
            order = np.arange(n).reshape(permute_heads, n // permute_heads // 2, 2).swapaxes(1, 2).reshape(-1)
            weight = weight.rows(order) if isinstance(weight, QuantLinear) else weight[order]
        return weight
