"""An 8-bit KV cache for an imported decoder: GroupQueryAttention's own quantized cache.

At long context a decode step is mostly attention reading the cache, and onnxruntime's CPU
GroupQueryAttention reads each KV head once per query head it serves. An int8 cache is a quarter of
float32's bytes. GQA takes static scales, one per (KV head, channel), as inputs: they are calibrated
here on a text read through the folder's float32-cache graphs. A key channel's scale comes from its
rotary pair's norm, since rotation moves a key's value within its pair, so that norm bounds both
channels at every position. A value channel's scale comes from its largest magnitude.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...engine.slot_model import PROMPT_FILE, SlotModel, slot_graph

CALIBRATION_TOKENS = 2048
_CHUNK = 256  # tokens per prompt run while calibrating
_GRAPHS = ("model.onnx", PROMPT_FILE)


def quantize_kv_cache(folder: Path, tokens: int = CALIBRATION_TOKENS) -> None:
    """Rewrite the decoder graphs in `folder` (a GGUF import's, float32 cache) to keep their KV cache
    in int8, with scales calibrated on the first `tokens` tokens of `calibration_text()`."""
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(calibration_text()).ids[:tokens]
    scales = _calibrate(folder, ids)
    for name in _GRAPHS:
        if (folder / name).is_file():
            _rewrite(folder / name, scales)


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
        raise ValueError(f"{folder} holds no float32-cache decoder to calibrate")
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


def _rewrite(path: Path, scales: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """`path`'s cache inputs and outputs as int8 and each GQA node quantizing with its layer's scales
    (the weights in the external data file are untouched)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(path), load_external_data=False)
    graph = proto.graph
    for value in [*graph.input, *graph.output]:
        if value.name.startswith(("past_key_values.", "present.")):
            value.type.tensor_type.elem_type = TensorProto.INT8
    attention = [node for node in graph.node if node.op_type == "GroupQueryAttention"]
    if len(attention) != len(scales):
        raise ValueError(f"{path.name} has {len(attention)} attention layers, calibrated {len(scales)}")
    for layer, (node, (key_scale, value_scale)) in enumerate(zip(attention, scales, strict=True)):
        names = [f"kv_cache.{layer}.key_scale", f"kv_cache.{layer}.value_scale"]
        graph.initializer.extend(
            numpy_helper.from_array(array, name)
            for array, name in zip((key_scale, value_scale), names, strict=True)
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
