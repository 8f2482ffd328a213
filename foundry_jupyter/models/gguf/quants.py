"""GGUF block types: which are kept as 4-bit blocks for `MatMulNBits`, and how each is unpacked.

What happens to each type, and why:
- Q4_0, Q4_1, Q4_K: kept exactly as 4-bit blocks of 32 with a float scale and a per-block offset
  (`QuantLinear`). Q4_K's super-block of 256 holds eight sub-blocks of 32, each `d*sc * q - dmin*m`
  with 6-bit sc and m: per sub-block that is Q4_1's form, so it becomes scale `d*sc` and offset
  `8*d*sc - dmin*m` with no loss.
- Q5_0, Q5_1, Q5_K, Q6_K, Q8_0: dequantized to float32. Their values need more than 4 bits, and
  onnxruntime's CPU `MatMulNBits` with 8 bits and float32 activations (accuracy_level 1) runs about
  twenty times slower than a float32 `MatMul` of the same shape; its fast 8-bit path quantizes the
  activations to int8, which changes answers. Float32 keeps these exact at `MatMul` speed.
- Q2_K, Q3_K: dequantized to float32 too (they are rare in practice and `gguf` reads them).
- Anything else (the IQ types, TQ, MXFP4, BF16 matrices are fine): refused by `check_types` with a
  one-line error naming the tensor and its type.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BLOCK = 32  # weights per MatMulNBits block (and per Q4_0 / Q4_1 / Q8_0 block and K-quant sub-block)
SUPER = 256  # weights per K-quant super-block

KEPT_4BIT = ("Q4_0", "Q4_1", "Q4_K")
DEQUANTIZED = ("F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q5_K", "Q6_K")
SUPPORTED_TYPES = KEPT_4BIT + DEQUANTIZED


def unsupported_type(tensors: dict[str, Any]) -> tuple[str, str] | None:
    """The first (tensor name, block type) this importer cannot read, or None."""
    for name, t in tensors.items():
        if t.tensor_type.name not in SUPPORTED_TYPES:
            return name, t.tensor_type.name
    return None


def dequantize(data: np.ndarray, kind: Any) -> np.ndarray:
    """Float32 `[rows, columns]` from GGUF's raw rows, with `gguf`'s own numpy kernels."""
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize as gguf_dequantize

    if kind == T.F32:
        return np.asarray(data, dtype=np.float32)
    if kind == T.F16:
        return np.asarray(data).astype(np.float32)
    if kind.name in KEPT_4BIT:
        packed, scale, offset = unpack_4bit(data, kind.name)
        return expand_4bit(packed, scale, offset)
    if kind == T.Q8_0:
        return _q8_0(data)
    return gguf_dequantize(data, kind).astype(np.float32, copy=False)


def unpack_4bit(data: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(packed `[N, blocks, 16]` in MatMulNBits' nibble order, scale `[N, blocks]`, offset or None) such
    that `W[n, k] = scale[n, b] * (q - 8) + offset[n, b]`, b = k // 32."""
    data = np.asarray(data, dtype=np.uint8)
    n = data.shape[0]
    if kind == "Q4_K":
        q, scale, offset = _q4_k(data.reshape(n, -1, 144))
    else:
        asymmetric = kind == "Q4_1"
        blocks = data.reshape(n, -1, 20 if asymmetric else 18)
        scale = _f16(blocks[..., 0:2])
        qs = blocks[..., -16:]
        # GGUF nibbles: element j low, element j+16 high.
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)
        # d*q + m == d*(q - 8) + (m + 8d): the symmetric part goes to MatMulNBits.
        offset = _f16(blocks[..., 2:4]) + 8.0 * scale if asymmetric else None
    # MatMulNBits: element 2j in the low nibble, 2j+1 in the high one.
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(packed), scale, offset


def expand_4bit(packed: np.ndarray, scale: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    n, blocks, _ = packed.shape
    q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, blocks, BLOCK).astype(np.float32)
    w = scale[..., None] * (q - 8.0)
    if offset is not None:
        w += offset[..., None]
    return w.reshape(n, blocks * BLOCK)


def _q4_k(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q4_K super-blocks `[N, supers, 144]`: d, dmin (f16), 12 bytes of 6-bit scales and minimums, then
    128 bytes where each run of 32 bytes holds sub-block 2c in its low nibbles and 2c+1 in its high."""
    n, supers, _ = blocks.shape
    d, dmin = _f16(blocks[..., 0:2]), _f16(blocks[..., 2:4])
    sc, m = _scale_min_6bit(blocks[..., 4:16])
    qs = blocks[..., 16:].reshape(n, supers, 4, 1, 32)
    q = (qs >> np.array([0, 4], np.uint8).reshape(1, 1, 1, 2, 1)) & 0x0F  # [n, supers, 4, 2, 32]
    q = q.reshape(n, supers * 8, BLOCK)
    scale = (d[..., None] * sc).reshape(n, supers * 8)
    minimum = (dmin[..., None] * m).reshape(n, supers * 8)
    return q, scale, 8.0 * scale - minimum


def _scale_min_6bit(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eight 6-bit scales and minimums of a Q4_K / Q5_K super-block (llama.cpp's get_scale_min_k4)."""
    lo, mid, hi = packed[..., 0:4], packed[..., 4:8], packed[..., 8:12]
    sc = np.concatenate([lo & 0x3F, (hi & 0x0F) | ((lo >> 2) & 0x30)], axis=-1)
    m = np.concatenate([mid & 0x3F, (hi >> 4) | ((mid >> 2) & 0x30)], axis=-1)
    return sc.astype(np.float32), m.astype(np.float32)


def _f16(two_bytes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(two_bytes).view(np.float16)[..., 0].astype(np.float32)


def _q8_0(data: np.ndarray) -> np.ndarray:
    blocks = np.asarray(data, dtype=np.uint8).reshape(data.shape[0], -1, 34)
    scale = blocks[..., 0:2].copy().view(np.float16).astype(np.float32)
    q = blocks[..., 2:].view(np.int8).astype(np.float32)
    return (scale * q).reshape(data.shape[0], -1)
