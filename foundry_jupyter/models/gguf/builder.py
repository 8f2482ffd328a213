"""An ONNX graph under construction, its large initializers written to an external data file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_INLINE_LIMIT = 1024  # bytes; smaller initializers stay inside the .onnx file
_ALIGN = 4096  # external data offsets aligned so onnxruntime can memory-map them


class GraphBuilder:
    """Collects nodes and initializers; large initializers go straight to `data_path` as they come
    (without one, every initializer stays inside the graph)."""

    def __init__(self, data_path: Path | None, prefix: str = "") -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._data = data_path.open("wb") if data_path else None
        self._data_name = data_path.name if data_path else ""
        self._prefix = prefix  # keeps generated names apart from those of a graph being extended
        self._names: dict[str, int] = {}
        self._consts: dict[tuple[str, bytes], str] = {}

    def close(self) -> None:
        if self._data:
            self._data.close()

    def name(self, base: str) -> str:
        count = self._names.get(base, 0)
        self._names[base] = count + 1
        return self._prefix + (base if count == 0 else f"{base}_{count}")

    def node(
        self, op: str, inputs: list[str], outputs: int | list[str] = 1, *, domain: str = "", **attrs: Any
    ):
        node_name = self.name(f"/{op}")
        if isinstance(outputs, int):
            outputs = [f"{node_name}/output_{i}" for i in range(outputs)]
        self.nodes.append(self.helper.make_node(op, inputs, outputs, name=node_name, domain=domain, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def initializer(self, name: str, array: np.ndarray) -> str:
        from onnx import TensorProto, numpy_helper

        array = np.ascontiguousarray(array)
        if array.nbytes < _INLINE_LIMIT or self._data is None:
            self.initializers.append(numpy_helper.from_array(array, name))
            return name
        tensor = TensorProto()
        tensor.name = name
        tensor.data_type = self.helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        pad = -self._data.tell() % _ALIGN
        self._data.write(b"\0" * pad)
        offset = self._data.tell()
        self._data.write(memoryview(array).cast("B"))
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (
            ("location", self._data_name),
            ("offset", str(offset)),
            ("length", str(array.nbytes)),
        ):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self.initializers.append(tensor)
        return name

    def const(self, value: Any, dtype: Any = np.int64) -> str:
        array = np.asarray(value, dtype=dtype)
        key = (f"{array.dtype}{array.shape}", array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.initializer(self.name("const"), array)
        return self._consts[key]
