"""An 8-bit KV cache for an imported decoder: GroupQueryAttention's own quantized cache.

At long context a decode step is mostly attention reading the cache, and onnxruntime's CPU
GroupQueryAttention reads each KV head once per query head it serves. An int8 cache is a quarter of
float32's bytes. GQA takes static scales, one per (KV head, channel), as inputs: they are calibrated
here on a text read through the folder's float32-cache graphs. A key channel's scale comes from its
rotary pair's norm, since rotation moves a key's value within its pair, so that norm bounds both
channels at every position. A value channel's scale comes from its largest magnitude.

`model.onnx` (decode steps, and everything og runs) uses GQA's quantized cache as it is. Its prompt
path costs every query row a pass over the whole int8 past, several times float32's at long context,
so `model.prompt.onnx` reads prompts in float32: it dequantizes the past, runs float GQA over it, and
outputs only the new positions' keys and values, quantized with the same scales, for the engine to
write into its cache (`PRESENT_METADATA`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...engine.slot_model import NEW_POSITIONS, PRESENT_METADATA, PROMPT_FILE, SlotModel, slot_graph
from ...errors import InvalidRequest
from .builder import GraphBuilder

CALIBRATION_TOKENS = 2048
_CHUNK = 256  # tokens per prompt run while calibrating


def quantize_kv_cache(folder: Path, tokens: int = CALIBRATION_TOKENS) -> None:
    """Rewrite the decoder graphs in `folder` (a GGUF import's, float32 cache) to keep their KV cache
    in int8, with scales calibrated on the first `tokens` tokens of `calibration_text()`."""
    from tokenizers import Tokenizer

    context = json.loads((folder / "genai_config.json").read_text())["model"]["context_length"]
    text = calibration_text()[: tokens * 16]  # far more characters than `tokens` needs
    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids
    ids = ids[: min(tokens, context)]
    scales = _calibrate(folder, ids)
    _quantize_in_gqa(folder / "model.onnx", scales)
    if (folder / PROMPT_FILE).is_file():
        _quantize_around_gqa(folder / PROMPT_FILE, scales)


def calibration_text() -> str:
    """Natural technical English with code in it: Python's own reference topics (shipped with
    CPython as `pydoc_data`), else this package's source."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        package = Path(__file__).parents[2]
        return "\n\n".join(p.read_text() for p in sorted(package.rglob("*.py")))
    return "\n\n".join(topics[key] for key in sorted(topics))


def _calibrate(folder: Path, ids: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer, the key and value scales `[kv_heads * head_size]` that fit what `ids` leave in the
    cache into int8."""
    config = json.loads((folder / "genai_config.json").read_text())
    graph = slot_graph(folder, config)
    if graph is None or graph.cache_dtype != np.float32:
        # LongRoPE models: the engine's own loop, which reads the cache the prompt graph writes, does
        # not run them.
        raise InvalidRequest(
            "int4-kv8 needs a decoder the engine's own loop runs (not LongRoPE); import it as int4",
            param="precision",
        )
    model = SlotModel(graph, rows=1, max_length=len(ids), threads=None, capacity=len(ids))
    for start in range(0, len(ids), _CHUNK):
        model.prefill(0, ids[start : start + _CHUNK], start, False, [start])
    kv = model.save(0, ids).kv  # [layers * 2, kv_heads, n, head_size]
    half = graph.head_size // 2
    scales = []
    for layer in range(graph.layers):
        keys, values = kv[2 * layer], kv[2 * layer + 1]
        # GQA rotates halves (not interleaved pairs): channel i pairs with i + head_size / 2.
        pair = np.sqrt(keys[..., :half] ** 2 + keys[..., half:] ** 2).max(axis=1)
        key_max = np.concatenate([pair, pair], axis=-1)
        value_max = np.abs(values).max(axis=1)
        scales.append(
            tuple(np.maximum(m.reshape(-1) / 127.0, 1e-6).astype(np.float32) for m in (key_max, value_max))
        )
    return scales


def _quantize_in_gqa(path: Path, scales: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """`path`'s cache inputs and outputs as int8, each GQA node quantizing with its layer's scales
    (the weights in the external data file are untouched)."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(path), load_external_data=False)
    graph = proto.graph
    _int8_cache(graph)
    for layer, node in enumerate(_attention(graph, scales)):
        names = [f"kv_cache.{layer}.key_scale", f"kv_cache.{layer}.value_scale"]
        graph.initializer.extend(
            numpy_helper.from_array(a, n) for a, n in zip(scales[layer], names, strict=True)
        )
        # GQA's inputs 12 and 13 (k_scale, v_scale); those between stay absent.
        node.input.extend([""] * (12 - len(node.input)) + names)
        node.attribute.extend(
            [
                helper.make_attribute("k_quant_type", "PER_CHANNEL"),
                helper.make_attribute("v_quant_type", "PER_CHANNEL"),
                helper.make_attribute("kv_cache_bit_width", 8),
            ]
        )
    onnx.save_model(proto, str(path))


def _quantize_around_gqa(path: Path, scales: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """`path` (a prompt graph) reading the int8 cache in float32. Per layer: the new positions' keys
    rotated (RotaryEmbedding, as GQA rotates them) and their keys and values rounded to the cache's
    int8 steps; the bound rows' past positions dequantized; float GQA over both, without rotary. So a
    position's key and value are the cache's int8 values whether it is read now or was read before
    (the same answers whatever the chunks). The new positions' int8 keys and values are outputs."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load(str(path), load_external_data=False)
    graph = proto.graph
    _int8_cache(graph)
    head_size = _head_size(graph)
    b = GraphBuilder(None, prefix="kv_cache.")
    unit, int8_zero = b.const(1.0, np.float32), b.const(0, np.int8)
    # The bound rows hold `past` positions: the mask's width less the tokens read now, whose
    # positions are past, past + 1, ...
    ids_shape = b.node("Shape", ["input_ids"])
    count = b.node("Gather", [ids_shape, b.const([1])])
    past = b.node("Sub", [b.node("Gather", [b.node("Shape", ["attention_mask"]), b.const([1])]), count])
    offsets = b.node("Range", [b.const(0), b.node("Squeeze", [count]), b.const(1)])
    positions = b.node("Expand", [b.node("Add", [offsets, past]), ids_shape])
    around: dict[str, tuple[list[Any], list[Any]]] = {}
    for layer, gqa in enumerate(_attention(graph, scales)):
        attrs = {a.name: helper.get_attribute_value(a) for a in gqa.attribute}
        heads, kv_heads = attrs["num_heads"], attrs["kv_num_heads"]
        start = len(b.nodes)
        q, k, v = gqa.input[:3]
        if not k:  # packed
            widths = b.const([heads * head_size, kv_heads * head_size, kv_heads * head_size])
            q, k, v = b.node("Split", [q, widths], 3, axis=-1)
        rotary = {"domain": "com.microsoft", "interleaved": attrs.get("rotary_interleaved", 0)}
        cos, sin = gqa.input[7], gqa.input[8]
        q = b.node("RotaryEmbedding", [q, positions, cos, sin], num_heads=heads, **rotary)
        k = b.node("RotaryEmbedding", [k, positions, cos, sin], num_heads=kv_heads, **rotary)
        new, rounded = [], []
        for slot, x, scale in ((3, k, scales[layer][0]), (4, v, scales[layer][1])):
            rounded.append(
                b.node(
                    "QuantizeLinear", [b.node("Mul", [x, b.const(1 / scale, np.float32)]), unit, int8_zero]
                )
            )
            new.append(
                b.node(
                    "Mul", [b.node("Cast", [rounded[-1]], to=TensorProto.FLOAT), b.const(scale, np.float32)]
                )
            )
            # The past: the bound rows' first `past` positions, dequantized.
            held = b.node("Slice", [gqa.input[slot], b.const([0]), past, b.const([2])])
            head_scale = b.const(scale.reshape(1, kv_heads, 1, head_size), np.float32)
            gqa.input[slot] = b.node("Mul", [b.node("Cast", [held], to=TensorProto.FLOAT), head_scale])
        middle = len(b.nodes)
        # The outputs: the new positions' int8 values, [batch, kv_heads, count, head_size].
        for i, values in enumerate(rounded):
            by_head = b.node("Reshape", [values, b.const([0, 0, kv_heads, head_size])])
            b.node("Transpose", [by_head], [gqa.output[1 + i]], perm=[0, 2, 1, 3])
            gqa.output[1 + i] = b.name("/unused_present")
        gqa.input[0], gqa.input[1], gqa.input[2] = q, *new
        del gqa.input[7:]  # no rotary caches: the keys come rotated
        next(a for a in gqa.attribute if a.name == "do_rotary").i = 0
        around[gqa.output[0]] = b.nodes[start:middle], b.nodes[middle:]
        del b.nodes[start:]
    shared = list(b.nodes)
    nodes = []
    for n in graph.node:
        before, after = around.get(n.output[0], ([], [])) if n.op_type == "GroupQueryAttention" else ([], [])
        nodes.extend([*before, n, *after])
    del graph.node[:]
    graph.node.extend([*shared, *nodes])
    graph.initializer.extend(b.initializers)
    for value in graph.output:
        if value.name.startswith("present."):
            dim = value.type.tensor_type.shape.dim[2]
            dim.Clear()
            dim.dim_param = "sequence_length"
    proto.metadata_props.add(key=PRESENT_METADATA, value=NEW_POSITIONS)
    onnx.save_model(proto, str(path))


def _int8_cache(graph: Any) -> None:
    from onnx import TensorProto

    for value in [*graph.input, *graph.output]:
        if value.name.startswith(("past_key_values.", "present.")):
            value.type.tensor_type.elem_type = TensorProto.INT8


def _attention(graph: Any, scales: list[tuple[np.ndarray, np.ndarray]]) -> list[Any]:
    attention = [node for node in graph.node if node.op_type == "GroupQueryAttention"]
    if len(attention) != len(scales):
        raise ValueError(f"the graph has {len(attention)} attention layers, calibrated {len(scales)}")
    return attention


def _head_size(graph: Any) -> int:
    past = next(i for i in graph.input if i.name.startswith("past_key_values."))
    return past.type.tensor_type.shape.dim[3].dim_value
