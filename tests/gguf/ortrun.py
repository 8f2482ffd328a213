"""Run an imported decoder directly with onnxruntime: whole sequences and KV-cache steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class Decoder:
    def __init__(self, folder: Path, filename: str = "model.onnx") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / filename), options, providers=["CPUExecutionProvider"]
        )
        cfg = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
        self.layers, self.kv_heads, self.head_size = (
            cfg["num_hidden_layers"],
            cfg["num_key_value_heads"],
            cfg["head_size"],
        )
        past = next(i for i in self.session.get_inputs() if i.name == "past_key_values.0.key")
        self.cache_dtype = np.int8 if past.type == "tensor(int8)" else np.float32

    def empty_cache(self) -> list[np.ndarray]:
        return [np.zeros((1, self.kv_heads, 0, self.head_size), self.cache_dtype)] * (2 * self.layers)

    def step(
        self, ids: list[int], cache: list[np.ndarray], logits_from: int | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits `[len(ids), vocab]` for `ids` after the tokens already in `cache`, and the new cache;
        with `logits_from`, only the rows of `ids` from that position on."""
        total = cache[0].shape[2] + len(ids)
        feeds = {"input_ids": np.asarray([ids], np.int64), "attention_mask": np.ones((1, total), np.int64)}
        if logits_from is not None:
            feeds["logits_from"] = np.asarray(logits_from, np.int64)
        for i in range(self.layers):
            feeds[f"past_key_values.{i}.key"] = cache[2 * i]
            feeds[f"past_key_values.{i}.value"] = cache[2 * i + 1]
        logits, *present = self.session.run(None, feeds)
        return logits[0], present

    def logits(self, ids: list[int]) -> np.ndarray:
        return self.step(ids, self.empty_cache())[0]
