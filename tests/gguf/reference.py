"""A numpy (float64) forward pass of the decoders the import takes, straight from a GGUF file.

It reads tensors with `gguf`'s own reader and dequantizer (llama.cpp's block layouts) and applies
rotary embeddings the way llama.cpp does on the file's own row order (interleaved pairs for llama and
mistral, rotate-half for the rest), so it shares no layout code with the importer it checks. Gemma 3
as llama.cpp runs it: embeddings scaled by sqrt(hidden), norms after each sub-layer too, GeGLU, and
every sixth layer global, the others attending to the last `sliding_window` tokens with rotary base
10000.
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
        """Logits `[len(ids), vocab]` for every position, with full causal attention (within the
        window on Gemma 3's local layers)."""
        arch = self.arch
        layers = self.meta("block_count")
        heads, kv_heads = self.meta("attention.head_count"), self.meta("attention.head_count_kv")
        eps = self.meta("attention.layer_norm_rms_epsilon")
        theta = self.meta("rope.freq_base", 10000.0)
        emb = self.weight("token_embd.weight")
        hidden = emb.shape[1]
        hd = self.meta("attention.key_length", hidden // heads)
        x = emb[np.asarray(ids)]
        if arch == "gemma3":
            x = x * np.sqrt(hidden)
        seq = len(ids)

        def norm(v: np.ndarray, w: str) -> np.ndarray:
            return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + eps) * self.weight(w)

        def proj(v: np.ndarray, name: str) -> np.ndarray:
            out = v @ self.weight(f"{name}.weight").T
            return out + self.weight(f"{name}.bias") if f"{name}.bias" in self.tensors else out

        def angles(base: float) -> tuple[np.ndarray, np.ndarray]:
            inv = base ** (-np.arange(0, hd, 2) / hd)
            scale = 1.0
            if "rope_freqs.weight" in self.tensors:  # llama 3's per-frequency factors
                inv = inv / self.weight("rope_freqs.weight")
            if "rope_factors_long.weight" in self.tensors:  # phi3 LongRoPE
                kind = "long" if seq > self.meta("rope.scaling.original_context_length") else "short"
                inv = inv / self.weight(f"rope_factors_{kind}.weight")
                scale = self.meta("rope.scaling.attn_factor")
            positions = np.arange(seq) / (self.meta("rope.scaling.factor", 1.0) if base == theta else 1.0)
            ang = positions[:, None] * inv[None, :]  # [seq, hd/2]
            return np.cos(ang)[:, None, :] * scale, np.sin(ang)[:, None, :] * scale

        def rope(v: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:  # v: [seq, n, hd]
            if arch not in ("llama", "mistral"):  # rotate-half (NeoX) on the original order
                a, b = v[..., : hd // 2], v[..., hd // 2 :]
                return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
            a, b = v[..., 0::2], v[..., 1::2]  # llama.cpp's interleaved pairs on the permuted rows
            out = np.empty_like(v)
            out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
            return out

        def head_norm(v: np.ndarray, w: str) -> np.ndarray:
            return norm(v, w) if w in self.tensors else v

        window = self.meta("attention.sliding_window", 0) if arch == "gemma3" else 0
        distance = np.arange(seq)[:, None] - np.arange(seq)[None, :]
        causal = np.where(distance < 0, -np.inf, 0.0)
        local_mask = np.where((distance < 0) | (distance >= window), -np.inf, 0.0) if window else causal
        q_rows, kv_rows = heads * hd, kv_heads * hd
        for i in range(layers):
            p = f"blk.{i}"
            local = bool(window) and (i + 1) % 6 != 0
            cos, sin = angles(10000.0 if local else theta)
            h = norm(x, f"{p}.attn_norm.weight")
            if f"{p}.attn_qkv.weight" in self.tensors:
                qkv = proj(h, f"{p}.attn_qkv")
                q, k, v = qkv[:, :q_rows], qkv[:, q_rows : q_rows + kv_rows], qkv[:, q_rows + kv_rows :]
            else:
                q, k, v = (proj(h, f"{p}.attn_{n}") for n in "qkv")
            q = rope(head_norm(q.reshape(seq, heads, hd), f"{p}.attn_q_norm.weight"), cos, sin)
            k = rope(head_norm(k.reshape(seq, kv_heads, hd), f"{p}.attn_k_norm.weight"), cos, sin)
            v = v.reshape(seq, kv_heads, hd)
            group = heads // kv_heads
            out = np.empty((seq, heads, hd))
            for head in range(heads):
                scores = q[:, head] @ k[:, head // group].T / np.sqrt(hd) + (local_mask if local else causal)
                probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
                probs /= probs.sum(axis=-1, keepdims=True)
                out[:, head] = probs @ v[:, head // group]
            attn = proj(out.reshape(seq, q_rows), f"{p}.attn_output")
            if arch == "gemma3":
                attn = norm(attn, f"{p}.post_attention_norm.weight")
            x = x + attn
            h = norm(x, f"{p}.ffn_norm.weight")
            if f"{p}.ffn_gate.weight" in self.tensors:
                gate, up = proj(h, f"{p}.ffn_gate"), proj(h, f"{p}.ffn_up")
            else:  # phi3: gate rows, then up rows
                gate, up = np.split(proj(h, f"{p}.ffn_up"), 2, axis=-1)
            if arch == "gemma3":  # GELU, tanh approximation
                act = 0.5 * gate * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (gate + 0.044715 * gate**3)))
            else:
                act = gate / (1.0 + np.exp(-gate))
            mlp = proj(act * up, f"{p}.ffn_down")
            if arch == "gemma3":
                mlp = norm(mlp, f"{p}.post_ffw_norm.weight")
            x = x + mlp
        x = norm(x, "output_norm.weight")
        head = self.weight("output.weight") if "output.weight" in self.tensors else emb
        return x @ head.T
