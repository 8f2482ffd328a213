"""A numpy (float64) forward pass of the llama architecture, straight from a GGUF file.

It reads tensors with `gguf`'s own reader and dequantizer and applies rotary embeddings the way
llama.cpp does on the file's own row order (interleaved pairs for llama, rotate-half for qwen2), so
it shares no layout code with the importer it checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Reference:
    def __init__(self, path: Path) -> None:
        import gguf

        self.reader = gguf.GGUFReader(str(path))
        self.arch = self.reader.fields["general.architecture"].contents()
        self.tensors = {t.name: t for t in self.reader.tensors}

    def meta(self, key: str, default=None):
        field = self.reader.fields.get(f"{self.arch}.{key}")
        return default if field is None else field.contents()

    def weight(self, name: str) -> np.ndarray:
        from gguf.quants import dequantize

        t = self.tensors[name]
        return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64)

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits `[len(ids), vocab]` for every position, with full causal attention."""
        layers = self.meta("block_count")
        heads, kv_heads = self.meta("attention.head_count"), self.meta("attention.head_count_kv")
        eps = self.meta("attention.layer_norm_rms_epsilon")
        theta = self.meta("rope.freq_base", 10000.0)
        emb = self.weight("token_embd.weight")
        hd = emb.shape[1] // heads
        x = emb[np.asarray(ids)]
        seq = len(ids)

        def norm(v: np.ndarray, w: str) -> np.ndarray:
            return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + eps) * self.weight(w)

        def proj(v: np.ndarray, name: str) -> np.ndarray:
            out = v @ self.weight(f"{name}.weight").T
            return out + self.weight(f"{name}.bias") if f"{name}.bias" in self.tensors else out

        inv = theta ** (-np.arange(0, hd, 2) / hd)
        ang = np.arange(seq)[:, None] * inv[None, :]  # [seq, hd/2]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

        def rope(v: np.ndarray) -> np.ndarray:  # v: [seq, n, hd]
            if self.arch == "qwen2":  # rotate-half (NeoX) on the original order
                a, b = v[..., : hd // 2], v[..., hd // 2 :]
                return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
            a, b = v[..., 0::2], v[..., 1::2]  # llama.cpp's interleaved pairs on the permuted rows
            out = np.empty_like(v)
            out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
            return out

        causal = np.triu(np.full((seq, seq), -np.inf), k=1)
        for i in range(layers):
            p = f"blk.{i}"
            h = norm(x, f"{p}.attn_norm.weight")
            q = rope(proj(h, f"{p}.attn_q").reshape(seq, heads, hd))
            k = rope(proj(h, f"{p}.attn_k").reshape(seq, kv_heads, hd))
            v = proj(h, f"{p}.attn_v").reshape(seq, kv_heads, hd)
            group = heads // kv_heads
            out = np.empty((seq, heads, hd))
            for head in range(heads):
                scores = q[:, head] @ k[:, head // group].T / np.sqrt(hd) + causal
                probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
                probs /= probs.sum(axis=-1, keepdims=True)
                out[:, head] = probs @ v[:, head // group]
            x = x + proj(out.reshape(seq, heads * hd), f"{p}.attn_output")
            h = norm(x, f"{p}.ffn_norm.weight")
            gate = proj(h, f"{p}.ffn_gate")
            x = x + proj(gate / (1.0 + np.exp(-gate)) * proj(h, f"{p}.ffn_up"), f"{p}.ffn_down")
        x = norm(x, "output_norm.weight")
        head = self.weight("output.weight") if "output.weight" in self.tensors else emb
        return x @ head.T
