"""The parts of a decoder layer where architectures differ: rotary caches, the attention inputs, the MLP.

Each function emits nodes through `graph`'s builder and linears; `Architecture` (see `architecture`)
says which variant a model takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .reader import GGUFModel, Hyperparams, QuantLinear, Weight

if TYPE_CHECKING:
    from .builder import GraphBuilder
    from .graph import Precision, _Linears


def rotary_caches(
    hp: Hyperparams, *, theta: float | None = None, factors: np.ndarray | None = None, linear: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin `[context_length, head_dim / 2]` as GroupQueryAttention wants them.

    `factors` divide each frequency (llama 3's `rope_freqs`, LongRoPE's short or long factors).
    """
    base = hp.rope_theta if theta is None else theta
    inv_freq = 1.0 / (base ** (np.arange(0, hp.rope_dim, 2, dtype=np.float64) / hp.rope_dim))
    if factors is not None:
        inv_freq = inv_freq / factors.astype(np.float64)
    positions = np.arange(hp.context_length, dtype=np.float64) / linear
    angles = np.outer(positions, inv_freq)
    scale = hp.rope_attn_factor
    return (np.cos(angles) * scale).astype(np.float32), (np.sin(angles) * scale).astype(np.float32)


def rotary_inputs(b: GraphBuilder, model: GGUFModel, total_len: str) -> dict[str, tuple[str, str]]:
    """The (cos, sin) cache names for "global" layers and, where the architecture has them, "local" ones."""
    hp = model.hparams
    factors = model.dense("rope_freqs.weight") if model.has("rope_freqs.weight") else None
    caches: dict[str, tuple[str, str]] = {}
    if hp.rope_original_context:
        # LongRoPE as onnxruntime-genai's builder and transformers apply it: the short factors while
        # the whole sequence fits the original context, the long ones beyond.
        short = rotary_caches(hp, factors=model.dense("rope_factors_short.weight"))
        long = rotary_caches(hp, factors=model.dense("rope_factors_long.weight"))
        use_long = b.node(
            "Cast", [b.node("Greater", [total_len, b.const(hp.rope_original_context, np.int32)])], to=7
        )
        shape = b.const(list(short[0].shape))  # the total length may come as a 1-element tensor
        caches["global"] = tuple(  # type: ignore[assignment]
            b.node(
                "Reshape",
                [
                    b.node("Gather", [b.initializer(f"{kind}_caches", np.stack([s, lg])), use_long], axis=0),
                    shape,
                ],
            )
            for kind, s, lg in (("cos", short[0], long[0]), ("sin", short[1], long[1]))
        )
    else:
        cos, sin = rotary_caches(hp, factors=factors, linear=hp.rope_linear_factor)
        caches["global"] = (b.initializer("cos_cache", cos), b.initializer("sin_cache", sin))
    if any(hp.is_local(i) for i in range(hp.num_layers)) and hp.local_rope_theta:
        cos, sin = rotary_caches(hp, theta=hp.local_rope_theta)
        caches["local"] = (b.initializer("cos_cache_local", cos), b.initializer("sin_cache_local", sin))
    else:
        caches["local"] = caches["global"]
    return caches


def attention_inputs(
    b: GraphBuilder, linear: _Linears, model: GGUFModel, precision: Precision, i: int, normed: str
) -> list[str]:
    """GroupQueryAttention's first three inputs: `[qkv, "", ""]` packed, or `[q, k, v]` after Q/K norms."""
    hp = model.hparams
    arch = hp.arch
    p = f"blk.{i}"
    keep = precision.keep_int4
    if arch.fused_qkv:
        parts: list[Weight] = [model.linear(f"{p}.attn_qkv.weight", keep_int4=keep)]
    else:
        parts = [
            model.linear(f"{p}.attn_q.weight", keep_int4=keep, permute_heads=hp.num_heads),
            model.linear(f"{p}.attn_k.weight", keep_int4=keep, permute_heads=hp.num_kv_heads),
            model.linear(f"{p}.attn_v.weight", keep_int4=keep),
        ]
    bias = None
    if model.has(f"{p}.attn_q.bias"):
        bias = np.concatenate(
            [
                _unpermute(model, model.dense(f"{p}.attn_q.bias"), hp.num_heads),
                _unpermute(model, model.dense(f"{p}.attn_k.bias"), hp.num_kv_heads),
                model.dense(f"{p}.attn_v.bias"),
            ]
        )
    qkv = fused_linear(b, linear, normed, parts, f"layers.{i}.attn.qkv_proj", bias)
    if not arch.qk_norm:
        return [qkv, "", ""]
    q_width, kv_width = hp.num_heads * hp.head_dim, hp.num_kv_heads * hp.head_dim
    q, k, v = b.node("Split", [qkv, b.const([q_width, kv_width, kv_width])], 3, axis=-1)
    return [
        _head_norm(b, model, q, f"{p}.attn_q_norm.weight", f"layers.{i}.attn.q_norm.weight"),
        _head_norm(b, model, k, f"{p}.attn_k_norm.weight", f"layers.{i}.attn.k_norm.weight"),
        v,
    ]


def _head_norm(b: GraphBuilder, model: GGUFModel, x: str, tensor: str, name: str) -> str:
    """RMSNorm over each head's `head_dim` values of `[batch, seq, heads * head_dim]`."""
    hp = model.hparams
    heads = b.node("Reshape", [x, b.const([0, 0, -1, hp.head_dim])])
    normed = b.node(
        "SimplifiedLayerNormalization",
        [heads, b.initializer(name, model.dense(tensor))],
        axis=-1,
        epsilon=hp.rms_eps,
        stash_type=1,
    )
    return b.node("Reshape", [normed, b.const([0, 0, -1])])


def post_norm(b: GraphBuilder, model: GGUFModel, x: str, tensor: str, name: str) -> str:
    """Gemma's norm of a sub-layer's output before the residual add; `x` itself elsewhere."""
    if not model.hparams.arch.sandwich_norms:
        return x
    return b.node(
        "SimplifiedLayerNormalization",
        [x, b.initializer(name, model.dense(tensor))],
        axis=-1,
        epsilon=model.hparams.rms_eps,
        stash_type=1,
    )


def mlp(
    b: GraphBuilder, linear: _Linears, model: GGUFModel, precision: Precision, i: int, normed: str
) -> str:
    """down(act(gate(x)) * up(x)), act SiLU or tanh-GELU; gate and up as one projection, then split."""
    hp = model.hparams
    p = f"blk.{i}"
    keep = precision.keep_int4
    if hp.arch.fused_gate_up:
        parts: list[Weight] = [model.linear(f"{p}.ffn_up.weight", keep_int4=keep)]
    else:
        parts = [
            model.linear(f"{p}.ffn_gate.weight", keep_int4=keep),
            model.linear(f"{p}.ffn_up.weight", keep_int4=keep),
        ]
    gate_up = fused_linear(b, linear, normed, parts, f"layers.{i}.mlp.gate_up_proj")
    ffn = hp.intermediate_size
    gate, up = b.node("Split", [gate_up, b.const([ffn, ffn])], 2, axis=-1)
    if hp.arch.gelu:
        act = b.node("Gelu", [gate], approximate="tanh")
    else:
        act = b.node("Mul", [gate, b.node("Sigmoid", [gate])])
    down = model.linear(f"{p}.ffn_down.weight", keep_int4=keep)
    return linear(b.node("Mul", [act, up]), down, f"layers.{i}.mlp.down_proj", exact=precision.exact_down)


def fused_linear(
    b: GraphBuilder, linear: _Linears, x: str, parts: list[Weight], name: str, bias: np.ndarray | None = None
) -> str:
    """x @ [parts...]^T: one projection when the parts share a form, else one each, concatenated (so a
    Q6_K part does not turn its 4-bit neighbours into float32)."""
    fused = concat_rows(parts)
    if fused is not None:
        return linear(x, fused, name, bias)
    outputs, start = [], 0
    for index, part in enumerate(parts):
        n = part.shape[0]
        part_bias = None if bias is None else bias[start : start + n]
        outputs.append(linear(x, part, f"{name}.{index}", part_bias))
        start += n
    return b.node("Concat", outputs, axis=-1)


def concat_rows(parts: list[Weight]) -> Weight | None:
    """The parts stacked into one weight without changing their form, or None when their forms differ."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, QuantLinear) for p in parts):
        quant: list[QuantLinear] = parts  # type: ignore[assignment]
        offsets = None
        if any(p.offset is not None for p in quant):
            offsets = np.concatenate(
                [np.zeros_like(p.scale) if p.offset is None else p.offset for p in quant]
            )
        return QuantLinear(
            np.concatenate([p.packed for p in quant]), np.concatenate([p.scale for p in quant]), offsets
        )
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)  # type: ignore[arg-type]
    return None


def _unpermute(model: GGUFModel, v: np.ndarray, heads: int) -> np.ndarray:
    if not model.hparams.arch.permuted_qk:
        return v
    n = v.shape[0]
    return v.reshape(heads, n // heads // 2, 2).swapaxes(1, 2).reshape(-1)
