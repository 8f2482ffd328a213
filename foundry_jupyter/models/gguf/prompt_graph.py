"""`model.prompt.onnx`: the decoder with each 4-bit linear as integer GEMMs, to read prompts with.

onnxruntime-genai runs one graph for both phases, and MatMulNBits is built for decode: at
accuracy_level 4 it quantizes activations and works a few rows at a time, at level 1 it dequantizes
its blocks into a float32 GEMM on every run. A prompt is hundreds of rows, where onnxruntime's
integer GEMM (MLAS QGEMM: uint8 activations times int8 weights, on AMX or VNNI where the CPU has
them) is several times faster than either. So each body MatMulNBits, with the Add of Q4_1's offset
term that follows it, becomes two MatMulIntegerToFloat over the same int8 weights, summed: one on the
activations rounded to uint8, one on what that rounding left (see `_uint8_passes`).

The weights (4-bit values times their block scales, plus the offsets) are requantized to int8 per
output column: within 1/254 of a column's largest weight, far below the 4-bit blocks' own steps. The
inputs and outputs are the decoder's, so `model.onnx` continues from the KV cache this graph leaves.
The LM head is kept as it is: fed `logits_from`, it runs for one row.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ...engine.slot_model import PROMPT_FILE
from .builder import GraphBuilder
from .quants import BLOCK, expand_4bit

PROMPT_DATA_FILE = f"{PROMPT_FILE}.data"
_STEPS = (1 / 127, 1 / (127 * 254))  # the two passes' rounding steps, for rows scaled to [-1, 1]
_ZERO_POINT = 128


def write_prompt_graph(decoder: Any, folder: Path) -> Path:
    """Write `PROMPT_FILE` (and its int8 weights in `PROMPT_DATA_FILE`) beside `decoder`'s files."""
    import onnx

    prompt = onnx.ModelProto()
    prompt.CopyFrom(decoder)
    graph = prompt.graph
    b = GraphBuilder(folder / PROMPT_DATA_FILE, prefix="prompt.")
    try:
        rewrite = _Rewrite(graph, folder, b)
        nodes = []
        for node in graph.node:
            nodes.extend(rewrite(node))
    finally:
        b.close()
    del graph.node[:]
    graph.node.extend(_live(nodes, {o.name for o in graph.output}))
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used] + [t for t in b.initializers if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    path = folder / PROMPT_FILE
    onnx.save_model(prompt, str(path))
    return path


class _Rewrite:
    """Maps each decoder node to the nodes that replace it (itself, or an integer GEMM)."""

    def __init__(self, graph: Any, folder: Path, b: GraphBuilder) -> None:
        self.folder = folder
        self.b = b
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.passes: dict[str, tuple[list[list[str]], str]] = {}  # input -> uint8 passes, row scales
        self.folded: set[str] = set()  # outputs of offset Adds now computed by an integer GEMM

    def __call__(self, node: Any) -> list[Any]:
        if any(out in self.folded for out in node.output):
            return []
        if not self._is_body_linear(node):
            return [node]
        start = len(self.b.nodes)
        self._integer_gemm(node)
        return self.b.nodes[start:]

    def _is_body_linear(self, node: Any) -> bool:
        if node.op_type != "MatMulNBits" or "logits" in node.output or len(node.input) != 3:
            return False
        attrs = _attrs(node)
        return (attrs["bits"], attrs["block_size"]) == (4, BLOCK) and all(
            name in self.initializers for name in node.input[1:]
        )

    def _integer_gemm(self, node: Any) -> None:
        b = self.b
        attrs = _attrs(node)
        k, n = attrs["K"], attrs["N"]
        packed, scales = (self._array(name) for name in node.input[1:])
        out = node.output[0]
        add, offsets = self._offset_term(out)
        if add is not None:
            out = add.output[0]
            self.folded.add(out)
        blocks = k // BLOCK
        w = expand_4bit(packed.reshape(n, blocks, BLOCK // 2), scales.reshape(n, blocks), offsets)
        base = node.input[1].removesuffix(".packed")
        weight, column_scale = _int8_columns(w)
        weight = b.initializer(f"{base}.int8", weight)
        column_scale = b.initializer(f"{base}.int8_scales", column_scale)
        passes, rows = self._uint8_passes(node.input[0])
        products = [
            b.node("MatMulIntegerToFloat", [q, weight, scale, column_scale, zero], domain="com.microsoft")
            for q, scale, zero in passes
        ]
        b.node("Mul", [b.node("Add", products), rows], [out])

    def _offset_term(self, out: str) -> tuple[Any, np.ndarray] | tuple[None, None]:
        """The `Add(out, MatMul(block sums, offsets))` after a Q4_1 product, and the offsets."""
        uses = self.consumers[out]
        if len(uses) != 1 or uses[0].op_type != "Add":
            return None, None
        add = uses[0]
        other = self.producer.get(add.input[1] if add.input[0] == out else add.input[0])
        if other is None or other.op_type != "MatMul" or other.input[1] not in self.initializers:
            return None, None
        return add, self._array(other.input[1]).T  # [N, blocks], as expand_4bit takes it

    def _uint8_passes(self, x: str) -> tuple[list[list[str]], str]:
        """`x`'s rows scaled to a largest magnitude of 1, as two uint8 tensors that sum back to them
        within 1/64,516 ([uint8, scale, zero point] each: the rows rounded to steps of 1/127, then what
        that left, to steps of 1/(127 * 254)), and the rows' scales. The steps are fixed, so a row
        rounds alike whatever else its chunk holds (a held conversation's continuation reads its own
        rows as the whole prompt did), and a few positions' far larger activations cost the rest
        nothing. One pass alone loses too much."""
        if x not in self.passes:
            b = self.b
            amax = b.node("ReduceMax", [b.node("Abs", [x]), b.const([-1])], keepdims=1)
            rows = b.node("Max", [amax, b.const(1e-30, np.float32)])
            rest = b.node("Div", [x, rows])
            passes = []
            for step in _STEPS:
                scale, zero = b.const(step, np.float32), b.const(_ZERO_POINT, np.uint8)
                q = b.node("QuantizeLinear", [rest, scale, zero])
                passes.append([q, scale, zero])
                if len(passes) < len(_STEPS):
                    rest = b.node("Sub", [rest, b.node("DequantizeLinear", [q, scale, zero])])
            self.passes[x] = passes, rows
        return self.passes[x]

    def _array(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.initializers[name], base_dir=str(self.folder))


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`w` `[N, K]` as int8 `[K, N]` and one scale per output column (max|w| / 127)."""
    scale = np.abs(w).max(axis=1) / 127.0
    safe = np.where(scale == 0, 1.0, scale)
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    return np.ascontiguousarray(q.T), scale.astype(np.float32)


def _live(nodes: list[Any], outputs: set[str]) -> list[Any]:
    """`nodes` without those whose outputs nothing uses (the 4-bit offset terms' block sums)."""
    needed = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(out and out in needed for out in node.output):
            keep.append(node)
            needed.update(node.input)
    return keep[::-1]
