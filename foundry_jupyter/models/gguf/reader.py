"""Read a llama-family GGUF file: hyperparameters, tokenizer metadata and weights.

Weights come out in ONNX's row convention (`[out_features, in_features]`, the reverse of a GGUF
tensor's `shape`), with llama.cpp's rotary row permutation of Q and K undone. Q4_0 and Q4_1 linears can
stay as their exact 4-bit blocks (`QuantLinear`); every other type is dequantized to float32 with the
`gguf` package's own numpy kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InvalidRequest

# Architectures whose tensors and attention follow llama's layout (qwen2 adds Q/K/V biases).
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")
# llama.cpp's converter permutes Q/K rows into its interleaved rotary order only for these; qwen2
# files keep the original (rotate-half) order.
PERMUTED_QK = ("llama", "mistral")
BLOCK = 32  # weights per Q4_0 / Q4_1 / Q8_0 block


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
        n, k = self.shape
        low = (self.packed & 0x0F).astype(np.float32)
        high = (self.packed >> 4).astype(np.float32)
        q = np.stack([low, high], axis=-1).reshape(n, k // BLOCK, BLOCK)
        w = self.scale[..., None] * (q - 8.0)
        if self.offset is not None:
            w += self.offset[..., None]
        return w.reshape(n, k)


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
        if scaling not in ("none", "linear") and factor != 1.0:
            raise GGUFError(f"{self.path.name}: rope scaling {scaling!r} is not supported")
        return Hyperparams(
            architecture=arch,
            num_layers=int(self._arch_field("block_count", required=True)),
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
        from gguf import GGMLQuantizationType as T
        from gguf.quants import dequantize

        t = self._tensor(name)
        kind = t.tensor_type
        if kind == T.F32:
            return np.asarray(t.data, dtype=np.float32)
        if kind == T.F16:
            return np.asarray(t.data).astype(np.float32)
        if kind in (T.Q4_0, T.Q4_1):
            return self._quant(t).dequantize()
        if kind == T.Q8_0:
            return _q8_0(t.data)
        try:
            return dequantize(t.data, kind).astype(np.float32, copy=False)
        except NotImplementedError as exc:
            raise GGUFError(f"{self.path.name}: tensor {name} has unsupported type {kind.name}") from exc

    def linear(self, name: str, *, keep_int4: bool, permute_heads: int = 0) -> Weight:
        """A linear's weight `[N, K]`: exact 4-bit blocks when asked and possible, else float32.

        `permute_heads` (heads for Q, kv heads for K) undoes llama.cpp's rotary row order where the
        converter applied it.
        """
        from gguf import GGMLQuantizationType as T

        t = self._tensor(name)
        exact = keep_int4 and t.tensor_type in (T.Q4_0, T.Q4_1)
        weight: Weight = self._quant(t) if exact else self.dense(name)
        if permute_heads and self.hparams.architecture in PERMUTED_QK:
            n = weight.shape[0]
            # GGUF row (h, i, j) holds original row (h, j, i) of each head's [2, head_dim/2] halves.
            order = np.arange(n).reshape(permute_heads, n // permute_heads // 2, 2).swapaxes(1, 2).reshape(-1)
            weight = weight.rows(order) if isinstance(weight, QuantLinear) else weight[order]
        return weight

    def _quant(self, t: Any) -> QuantLinear:
        """Q4_0 (`d, qs[16]`) or Q4_1 (`d, m, qs[16]`) blocks; low nibbles hold elements 0-15."""
        from gguf import GGMLQuantizationType as T

        asymmetric = t.tensor_type == T.Q4_1
        data = np.asarray(t.data, dtype=np.uint8)
        n = data.shape[0]
        blocks = data.reshape(n, -1, 20 if asymmetric else 18)
        scale = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        qs = blocks[..., -16:]
        # GGUF nibbles: element j low, element j+16 high. MatMulNBits: element 2j low, 2j+1 high.
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)
        packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
        offset = None
        if asymmetric:
            minimum = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
            # d*q + m == d*(q - 8) + (m + 8d): the symmetric part goes to MatMulNBits.
            offset = minimum + 8.0 * scale
        return QuantLinear(np.ascontiguousarray(packed), scale, offset)


def _q8_0(data: np.ndarray) -> np.ndarray:
    blocks = np.asarray(data, dtype=np.uint8).reshape(data.shape[0], -1, 34)
    scale = blocks[..., 0:2].copy().view(np.float16).astype(np.float32)
    q = blocks[..., 2:].view(np.int8).astype(np.float32)
    return (scale * q).reshape(data.shape[0], -1)
