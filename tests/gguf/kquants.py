"""Encoders for llama.cpp's K-quant blocks (Q4_K, Q5_K, Q6_K), which `gguf.quants` only decodes.

Plain min/max rounding, not llama.cpp's error-minimising search: the tests need valid blocks in
llama.cpp's byte layout (checked by decoding them with `gguf`'s own dequantizer), not the best ones.
"""

from __future__ import annotations

import numpy as np

SUPER = 256


def quantize(w: np.ndarray, kind: str) -> np.ndarray:
    """Raw GGUF rows `[rows, bytes]` for a float matrix `[rows, columns]` (columns a multiple of 256)."""
    rows, cols = w.shape
    blocks = w.astype(np.float32).reshape(rows * cols // SUPER, SUPER)
    encoded = {"Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k}[kind](blocks)
    return encoded.reshape(rows, -1)


def _f16_bytes(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).reshape(-1, 1).view(np.uint8)


def _scale_min(blocks: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-super-block header (d, dmin, 12 packed bytes) and quantized values for 8 sub-blocks of 32."""
    sub = blocks.reshape(-1, 8, 32)
    low = np.minimum(sub.min(axis=-1), 0.0)
    scale = (sub.max(axis=-1) - low) / levels
    minimum = -low
    d = (scale.max(axis=-1) / 63).astype(np.float16).astype(np.float32)
    dmin = (minimum.max(axis=-1) / 63).astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(scale / np.where(d == 0, 1, d)[:, None]), 0, 63).astype(np.uint8)
    m = np.clip(np.rint(minimum / np.where(dmin == 0, 1, dmin)[:, None]), 0, 63).astype(np.uint8)
    eff_scale = d[:, None] * sc
    eff_min = dmin[:, None] * m
    q = np.rint((sub + eff_min[..., None]) / np.where(eff_scale == 0, 1, eff_scale)[..., None])
    q = np.clip(q, 0, levels).astype(np.uint8)
    packed = np.empty((len(blocks), 12), np.uint8)
    packed[:, 0:4] = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    packed[:, 4:8] = m[:, :4] | ((m[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4)
    header = np.concatenate([_f16_bytes(d), _f16_bytes(dmin), packed], axis=1)
    return header, q, eff_scale


def _low_nibbles(q: np.ndarray) -> np.ndarray:
    """128 bytes: each run of 32 holds sub-block 2c in its low nibbles and 2c+1 in its high ones."""
    low = (q & 0x0F).reshape(-1, 4, 2, 32)
    return (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(-1, 128)


def _q4_k(blocks: np.ndarray) -> np.ndarray:
    header, q, _ = _scale_min(blocks, 15)
    return np.concatenate([header, _low_nibbles(q)], axis=1)


def _q5_k(blocks: np.ndarray) -> np.ndarray:
    header, q, _ = _scale_min(blocks, 31)
    high = (q >> 4).astype(np.uint8)  # [n, 8, 32]: bit b of byte i is element i of sub-block b
    qh = np.zeros((len(blocks), 32), np.uint8)
    for b in range(8):
        qh |= high[:, b] << b
    return np.concatenate([header, qh, _low_nibbles(q)], axis=1)


def _q6_k(blocks: np.ndarray) -> np.ndarray:
    n = len(blocks)
    sub = blocks.reshape(n, 16, 16)
    scale = np.abs(sub).max(axis=-1) / 31
    d = (scale.max(axis=-1) / 127).astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(scale / np.where(d == 0, 1, d)[:, None]), -128, 127).astype(np.int8)
    eff = d[:, None] * sc
    q = np.clip(np.rint(sub / np.where(eff == 0, 1, eff)[..., None]), -32, 31).astype(np.int16) + 32
    q = q.astype(np.uint8).reshape(n, SUPER)
    # Element h*128 + s*64 + t: low 4 bits in ql[h*64 + t] at shift 4s; element h*128 + s*32 + t: high
    # 2 bits in qh[h*32 + t] at shift 2s.
    low = (q & 0x0F).reshape(n, 2, 2, 64)
    ql = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(n, 128)
    high = (q >> 4).reshape(n, 2, 4, 32)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)).reshape(n, 64)
    return np.concatenate([ql, qh, sc.view(np.uint8), _f16_bytes(d)], axis=1)
