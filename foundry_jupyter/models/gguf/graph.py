"""Write the decoder as an ONNX graph with the operators onnxruntime-genai's own builder uses.

The graph matches what og's builder writes for a llama model on CPU (opset 21 + com.microsoft):
`SimplifiedLayerNormalization` / `SkipSimplifiedLayerNormalization`, one fused QKV projection into
`GroupQueryAttention` with its rotary caches, a SiLU-gated MLP, and either float32 `MatMul`s or
`MatMulNBits` over GGUF's own 4-bit blocks. Large initializers go straight to `model.onnx.data` as
they are produced, so a conversion never holds two copies of the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The name the engine's own loop (`slot_model`) looks for: an optional int64 input (logits only for
# positions from there on).
from ...engine.slot_model import LOGITS_FROM
from .builder import GraphBuilder
from .layers import attention_inputs, mlp, post_norm, rotary_inputs
from .prompt_graph import write_prompt_graph
from .reader import BLOCK, GGUFModel, QuantLinear, Weight

OPSET = 21
DATA_FILE = "model.onnx.data"


@dataclass(frozen=True)
class Precision:
    """How linears are stored: 4-bit blocks kept (`int4*`) or everything float32.

    `accuracy_level` is MatMulNBits' compute type: 1 keeps float32 activations (exact), 4 quantizes
    activations to int8 in blocks of `block_size` (about three times faster on CPU, but on its own it
    flips close calls). `head_bits` 8 stores the tied LM head and the embedding as 8-bit blocks (Q8_0's
    own values) computed at `head_accuracy_level`.

    `two_pass` computes every 4-bit linear and the 8-bit head at accuracy_level 4 on two rows of one
    MatMulNBits: `a`, the input rounded to int8 blocks as onnxruntime's int8 kernels round it (so `a`
    goes through unchanged), and the rest `x - a`, about 1/254 of `x`, whose own rounding error is
    about 1/254 of that. The rows are summed: close to float32 activations at nearly the int8
    kernel's decode speed (the weights are read once for both rows); a prompt is read at about half
    int4's speed, since level 4 costs each row in full.
    """

    name: str
    keep_int4: bool
    accuracy_level: int = 1
    block_size: int = BLOCK  # 16 splits each 32-weight block in two (finer int8 activation blocks)
    exact_down: bool = False  # the MLP down projection at accuracy_level 1 whatever the rest uses
    head_bits: int = 32  # 8: the (tied) LM head and embedding as 8-bit blocks
    head_block: int = 32  # a Q8_0 embedding keeps its own blocks of 32 (exact) whatever this says
    head_accuracy_level: int = 4
    two_pass: bool = False  # 4-bit linears and the 8-bit head at level 4 on (int8 part, rest) rows
    kv_bits: int = 32  # 8: the KV cache in int8 (`kv_cache.py`)


PRECISIONS = {
    "fp32": Precision("fp32", keep_int4=False),
    # The default computes as llama.cpp does on CPU: the file's own 4-bit blocks and the tied head's
    # 8-bit blocks against activations rounded to int8 blocks of 32 (llama.cpp: Q4_1 x Q8_1), so its
    # agreement with fp32 is llama.cpp's own (benchmarks/README.md). int4-exact keeps float32
    # activations: the same answers as fp32.
    "int4": Precision("int4", keep_int4=True, accuracy_level=4, head_bits=8),
    "int4-exact": Precision("int4-exact", keep_int4=True, accuracy_level=1),
    # int4 with an 8-bit KV cache: decoding at long context about twice as fast, at a point or two of
    # agreement (benchmarks/README.md).
    "int4-kv8": Precision("int4-kv8", keep_int4=True, accuracy_level=4, head_bits=8, kv_bits=8),
    # Measured on SmolLM2 (decode tokens/s relative to int4 on 2 AVX2 cores, teacher-forced top-1
    # agreement with fp32): plain int8 activations everywhere run 2.9x at 0.947, even in one group of
    # linears they cost 0.02-0.05; two passes run 1.8-2.0x at 0.992 (greedy answers equal on 7/7).
    # See benchmarks/gguf_import.py. Q4_1's minimum stays the exact offset term either way:
    # MatMulNBits' float zero points are exact but 10x slower, rounded uint8 ones drop top-1 to 0.71.
    "int4-fast": Precision(
        "int4-fast", keep_int4=True, accuracy_level=4, head_bits=8, head_block=16, two_pass=True
    ),
}


class _Linears:
    """Emits y = x @ W^T (+ b) for dense or 4-bit weights, sharing per-input block sums."""

    def __init__(self, b: GraphBuilder, precision: Precision) -> None:
        self.b = b
        self.precision = precision
        self._blocks: dict[tuple[str, int], str] = {}
        self._block_sums: dict[str, str] = {}
        self._rows: dict[tuple[str, int], str] = {}

    def __call__(
        self, x: str, weight: Weight, name: str, bias: np.ndarray | None = None, *, exact: bool = False
    ) -> str:
        b = self.b
        n, k = weight.shape
        if isinstance(weight, QuantLinear) and self.precision.two_pass and not exact:
            return self._two_pass(x, weight, name, bias)
        if isinstance(weight, QuantLinear):
            block = self.precision.block_size
            split = BLOCK // block  # the same weights, each GGUF block cut into `split` blocks
            packed = weight.packed.reshape(n, k // block, block // 2)
            scale = np.repeat(weight.scale, split, axis=1)
            y = b.node(
                "MatMulNBits",
                [
                    x,
                    b.initializer(f"{name}.weight.packed", packed),
                    b.initializer(f"{name}.weight.scales", scale.reshape(-1)),
                ],
                domain="com.microsoft",
                K=k,
                N=n,
                bits=4,
                block_size=block,
                accuracy_level=1 if exact else self.precision.accuracy_level,
            )
            if weight.offset is not None:
                # Q4_1's per-block offset c: sum over blocks of c[n, b] * sum(x in block b).
                offsets = b.initializer(f"{name}.weight.offsets", np.ascontiguousarray(weight.offset.T))
                y = b.node("Add", [y, b.node("MatMul", [self._block_sum(x, k), offsets])])
        else:
            w = b.initializer(f"{name}.weight", np.ascontiguousarray(weight.T))
            y = b.node("MatMul", [x, w])
        if bias is not None:
            y = b.node("Add", [y, b.initializer(f"{name}.bias", bias.astype(np.float32))])
        return y

    def _two_pass(self, x: str, weight: QuantLinear, name: str, bias: np.ndarray | None) -> str:
        """MatMulNBits at level 4 over `int8_rows(x)`, the two halves summed with Q4_1's offset term."""
        b = self.b
        n, k = weight.shape
        rows = b.node(
            "MatMulNBits",
            [
                self.int8_rows(x, k),
                b.initializer(f"{name}.weight.packed", weight.packed),
                b.initializer(f"{name}.weight.scales", weight.scale.reshape(-1)),
            ],
            domain="com.microsoft",
            K=k,
            N=n,
            bits=4,
            block_size=BLOCK,
            accuracy_level=4,
        )
        terms = list(b.node("Split", [rows], 2, axis=1, num_outputs=2))
        if weight.offset is not None:
            offsets = b.initializer(f"{name}.weight.offsets", np.ascontiguousarray(weight.offset.T))
            terms.append(b.node("MatMul", [self._block_sum(x, k), offsets]))
        if bias is not None:
            terms.append(b.initializer(f"{name}.bias", bias.astype(np.float32)))
        return b.node("Sum", terms)

    def int8_rows(self, x: str, k: int, block: int = BLOCK) -> str:
        """`[batch, 2 * seq, k]`: x rounded to symmetric int8 blocks (`a`), then the rest `x - a`.

        Per block, scale max|x| / 127 and round-half-to-even: how MLAS quantizes the activations of a
        MatMulNBits with this block_size at accuracy_level 4, so the kernel's own rounding keeps `a`.
        """
        key = (x, block)
        if key not in self._rows:
            b = self.b
            view = self._block_view(x, k, block)
            amax = b.node("ReduceMax", [b.node("Abs", [view]), b.const([-1])], keepdims=0)
            scale = b.node(
                "Max", [b.node("Mul", [amax, b.const(1 / 127, np.float32)]), b.const(1e-30, np.float32)]
            )
            q = b.node("QuantizeLinear", [x, scale], axis=-1, block_size=block, output_dtype=3)  # int8
            a = b.node("DequantizeLinear", [q, scale], axis=-1, block_size=block)
            self._rows[key] = b.node("Concat", [a, b.node("Sub", [x, a])], axis=1)
        return self._rows[key]

    def _block_view(self, x: str, k: int, block: int = BLOCK) -> str:
        if (x, block) not in self._blocks:
            view = self.b.node("Reshape", [x, self.b.const([0, 0, k // block, block])])
            self._blocks[(x, block)] = view
        return self._blocks[(x, block)]

    def _block_sum(self, x: str, k: int) -> str:
        if x not in self._block_sums:
            b = self.b
            self._block_sums[x] = b.node("ReduceSum", [self._block_view(x, k), b.const([-1])], keepdims=0)
        return self._block_sums[x]


def build_model(
    model: GGUFModel, dest: Path, precision: Precision, progress: Callable[[str], None] | None = None
) -> Path:
    """Write `model.onnx` and `model.onnx.data` into `dest` (an existing folder)."""
    import onnx
    from onnx import TensorProto

    hp = model.hparams
    b = GraphBuilder(dest / DATA_FILE)
    try:
        graph = _build_graph(model, b, precision, progress)
    finally:
        b.close()
    h = b.helper
    batch, seq, total, past = "batch_size", "sequence_length", "total_sequence_length", "past_sequence_length"
    inputs = [
        h.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, seq]),
        h.make_tensor_value_info("attention_mask", TensorProto.INT64, [batch, total]),
    ]
    # Optional: the first position whose logits are computed (default 0, every position, which is what
    # onnxruntime-genai expects); a prompt's reader that needs only the next token feeds S - 1 (or -1).
    # onnxruntime lists it in `get_overridable_initializers()`, not `get_inputs()`; folders imported
    # before it existed lack it.
    inputs.append(h.make_tensor_value_info(LOGITS_FROM, TensorProto.INT64, []))
    logits_len = "logits_sequence_length"
    outputs = [h.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, logits_len, hp.vocab_size])]
    kv_past = [batch, hp.num_kv_heads, past, hp.head_dim]
    kv_present = [batch, hp.num_kv_heads, total, hp.head_dim]
    for i in range(hp.num_layers):
        for kind in ("key", "value"):
            inputs.append(h.make_tensor_value_info(f"past_key_values.{i}.{kind}", TensorProto.FLOAT, kv_past))
            outputs.append(h.make_tensor_value_info(f"present.{i}.{kind}", TensorProto.FLOAT, kv_present))
    onnx_graph = h.make_graph(graph["nodes"], "decoder", inputs, outputs, graph["initializers"])
    onnx_model = h.make_model(
        onnx_graph,
        opset_imports=[h.make_opsetid("", OPSET), h.make_opsetid("com.microsoft", 1)],
        ir_version=10,
        producer_name="foundry-jupyter",
    )
    path = dest / "model.onnx"
    onnx.save_model(onnx_model, str(path))
    if precision.accuracy_level == 4 and not precision.two_pass:
        write_prompt_graph(onnx_model, dest)
    return path


def _build_graph(
    model: GGUFModel, b: GraphBuilder, precision: Precision, progress: Callable[[str], None] | None
) -> dict[str, Any]:
    from onnx import numpy_helper

    hp = model.hparams
    linear = _Linears(b, precision)

    # seqlens_k = (sum of the mask) - 1 and the total length, both int32, as GroupQueryAttention wants.
    mask_sum = b.node("ReduceSum", ["attention_mask", b.const([1])], keepdims=0)
    seqlens_k = b.node("Cast", [b.node("Sub", [mask_sum, b.const(1)])], to=6)
    mask_shape = b.node("Shape", ["attention_mask"])
    total_len = b.node("Cast", [b.node("Gather", [mask_shape, b.const(1)], axis=0)], to=6)
    rotary = rotary_inputs(b, model, total_len)
    # The positions the last layer's output half, the final norm and the LM head run on: every
    # position unless `logits_from` is fed (its default initializer is 0; fed, it overrides that).
    b.initializers.append(numpy_helper.from_array(np.array(0, np.int64), LOGITS_FROM))
    from_pos = b.node("Reshape", [LOGITS_FROM, b.const([1])])

    def logit_rows(x: str) -> str:
        return b.node("Slice", [x, from_pos, b.const([np.iinfo(np.int64).max]), b.const([1])])

    # Embedding, tied to the LM head unless the file has its own output matrix: one [hidden, vocab]
    # initializer, which onnxruntime transposes once at load for the Gather.
    embedding = model.dense("token_embd.weight")
    tied = not model.has("output.weight")
    head8 = None
    head_block = precision.head_block
    if tied and precision.head_bits == 8:
        if model.tensor_type("token_embd.weight") == "Q8_0":
            head_block = BLOCK  # Q8_0's own values
        head8 = _quantize8(embedding, head_block)
        data = b.initializer("lm_head.weight.q8", head8[0])
        scales = b.initializer("lm_head.weight.scales", head8[1])
        zeros = b.initializer("lm_head.weight.zero_points", np.full(head8[1].shape, 128, np.uint8))
        hidden = b.node(
            "GatherBlockQuantized",
            [data, "input_ids", scales, zeros],
            domain="com.microsoft",
            bits=8,
            block_size=head_block,
            gather_axis=0,
            quantize_axis=1,
        )
    elif tied:
        head = b.initializer("lm_head.weight", np.ascontiguousarray(embedding.T))
        table = b.node("Transpose", [head], perm=[1, 0])
    else:
        table = b.initializer("embed_tokens.weight", embedding)
    del embedding
    if head8 is None:
        hidden = b.node("Gather", [table, "input_ids"], axis=0)
    if hp.arch.embedding_scale:
        hidden = b.node("Mul", [hidden, b.const(np.sqrt(hp.hidden_size), np.float32)])

    residual = hidden
    normed = b.node(
        "SimplifiedLayerNormalization",
        [hidden, b.initializer("layers.0.input_layernorm.weight", model.dense("blk.0.attn_norm.weight"))],
        axis=-1,
        epsilon=hp.rms_eps,
        stash_type=1,
    )
    for i in range(hp.num_layers):
        if progress:
            progress(f"layer {i + 1}/{hp.num_layers}")
        p = f"blk.{i}"
        qkv = attention_inputs(b, linear, model, precision, i, normed)
        past = [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        attn, _, _ = b.node(
            "GroupQueryAttention",
            [*qkv, *past, seqlens_k, total_len, *rotary["local" if hp.is_local(i) else "global"]],
            [b.name(f"/layers.{i}/attn/output"), f"present.{i}.key", f"present.{i}.value"],
            domain="com.microsoft",
            num_heads=hp.num_heads,
            kv_num_heads=hp.num_kv_heads,
            scale=float(hp.attention_scale or 1.0 / np.sqrt(hp.head_dim)),
            do_rotary=1,
            rotary_interleaved=0,
            local_window_size=hp.sliding_window if hp.is_local(i) else -1,
            softcap=0.0,
        )
        if i == hp.num_layers - 1:
            # Past the last attention every position is computed alone: keep only the wanted rows.
            attn, residual = logit_rows(attn), logit_rows(residual)
        o = model.linear(f"{p}.attn_output.weight", keep_int4=precision.keep_int4)
        attn_out = linear(attn, o, f"layers.{i}.attn.o_proj")
        attn_out = post_norm(
            b,
            model,
            attn_out,
            f"{p}.post_attention_norm.weight",
            f"layers.{i}.post_attention_out_norm.weight",
        )
        normed, _, _, residual = b.node(
            "SkipSimplifiedLayerNormalization",
            [
                attn_out,
                residual,
                b.initializer(
                    f"layers.{i}.post_attention_layernorm.weight", model.dense(f"{p}.ffn_norm.weight")
                ),
            ],
            [b.name(f"/layers.{i}/post_attention_norm/output"), "", "", b.name(f"/layers.{i}/residual")],
            domain="com.microsoft",
            epsilon=hp.rms_eps,
        )
        mlp_out = mlp(b, linear, model, precision, i, normed)
        mlp_out = post_norm(
            b, model, mlp_out, f"{p}.post_ffw_norm.weight", f"layers.{i}.post_mlp_out_norm.weight"
        )
        next_norm = f"blk.{i + 1}.attn_norm.weight" if i + 1 < hp.num_layers else "output_norm.weight"
        next_name = f"layers.{i + 1}.input_layernorm.weight" if i + 1 < hp.num_layers else "norm.weight"
        normed, _, _, residual = b.node(
            "SkipSimplifiedLayerNormalization",
            [mlp_out, residual, b.initializer(next_name, model.dense(next_norm))],
            [b.name(f"/layers.{i}/next_norm/output"), "", "", b.name(f"/layers.{i}/residual_out")],
            domain="com.microsoft",
            epsilon=hp.rms_eps,
        )

    if head8 is not None:
        vocab, width = head8[0].shape
        packed = b.node("Reshape", [data, b.const([vocab, width // head_block, head_block])])
        two_pass = precision.two_pass
        rows = b.node(
            "MatMulNBits",
            [
                linear.int8_rows(normed, width, head_block) if two_pass else normed,
                packed,
                b.node("Reshape", [scales, b.const([-1])]),
            ],
            1 if two_pass else ["logits"],
            domain="com.microsoft",
            K=width,
            N=vocab,
            bits=8,
            block_size=head_block,
            accuracy_level=4 if two_pass else precision.head_accuracy_level,
        )
        if two_pass:
            b.node("Add", b.node("Split", [rows], 2, axis=1, num_outputs=2), ["logits"])
    elif tied:
        b.node("MatMul", [normed, head], ["logits"])
    else:
        out = model.linear("output.weight", keep_int4=precision.keep_int4)
        logits = linear(normed, out, "lm_head")
        b.node("Identity", [logits], ["logits"])
    return {"nodes": b.nodes, "initializers": b.initializers}


def _quantize8(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric 8-bit blocks as uint8 (q + 128) and scales; Q8_0 weights come back unchanged."""
    rows, width = w.shape
    blocks = w.reshape(rows, width // block, block)
    scale = np.abs(blocks).max(axis=-1) / 127.0
    safe = np.where(scale == 0, 1.0, scale)
    q = np.clip(np.rint(blocks / safe[..., None]), -127, 127).astype(np.int16) + 128
    return q.astype(np.uint8).reshape(rows, width), scale.astype(np.float32)
