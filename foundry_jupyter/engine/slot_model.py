"""A decoder graph run directly with onnxruntime, its KV cache in rows we own (`SlotModel`).

For `slots` (continuous batching): og 0.18's Engine batches our graphs only statically on CPU, so a
folder whose graph allows it is also opened as a plain `onnxruntime.InferenceSession`. That graph is
the GGUF importer's: `GroupQueryAttention` with a shared past/present buffer, inputs `input_ids`,
`attention_mask` and `past_key_values.{i}.key/value`, outputs `logits` and `present.{i}.key/value`,
no position ids (GQA rotates from seqlens_k = sum(mask) - 1 and total_sequence_length = mask width).

The cache: per layer and kind one array `[rows, kv_heads, capacity, head_size]` of the graph's cache
type (float32, or int8 where GQA quantizes it with the graph's own scales). A run binds
`array[first:first + count]` (contiguous) as both the past input and the present output, so GQA
writes each new token's key and value in place (it shares the buffer when the two pointers are equal)
and reads, per row, `sum(mask) - sequence_length` past positions. So each row's mask is its own count
of ones, right-padded with zeros to the widest row. A step of several rows must feed one token each
(GQA refuses a multi-token step over several rows with a past); a prompt is read one row at a time.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foundry_jupyter.engine.params import Sampling

LOGITS_FROM = "logits_from"  # optional graph input: logits only for positions >= it
# Optional, beside the decoder: the same graph with kernels faster for many rows, to read prompts with.
PROMPT_FILE = "model.prompt.onnx"
# A prompt graph whose metadata says so outputs only the new positions' keys and values (not the
# whole bound rows, written in place), for the caller to write into its cache.
PRESENT_METADATA = "foundry_jupyter.present"
NEW_POSITIONS = "new_positions"
_KV_INPUT = "past_key_values.{}.{}"
_KV_OUTPUT = "present.{}.{}"
_KINDS = ("key", "value")


@dataclass(frozen=True)
class SlotGraph:
    """The shape of a folder's decoder that `SlotModel` can run."""

    model_file: Path
    prompt_file: Path | None  # read prompts with this graph when the folder has one
    layers: int
    kv_heads: int
    head_size: int
    vocab_size: int
    cache_dtype: np.dtype  # float32, or int8 where GQA quantizes its cache


def slot_graph(path: Path, config: dict[str, Any]) -> SlotGraph | None:
    """The decoder of the folder at `path` (whose genai_config.json is `config`), when it is a graph
    `SlotModel` runs: a GroupQueryAttention decoder with a shared KV buffer, no position ids and no
    LongRoPE."""
    model = config.get("model", {})
    decoder = model.get("decoder", {})
    inputs, outputs = decoder.get("inputs", {}), decoder.get("outputs", {})
    if not config.get("search", {}).get("past_present_share_buffer"):
        return None
    if set(inputs) != {"input_ids", "attention_mask", "past_key_names", "past_value_names"}:
        return None
    if set(outputs) != {"logits", "present_key_names", "present_value_names"}:
        return None
    names = (
        inputs["input_ids"],
        inputs["attention_mask"],
        inputs["past_key_names"],
        inputs["past_value_names"],
        outputs["logits"],
        outputs["present_key_names"],
        outputs["present_value_names"],
    )
    wanted = ("input_ids", "attention_mask", "past_key_values.%d.key", "past_key_values.%d.value")
    wanted += ("logits", "present.%d.key", "present.%d.value")
    if names != wanted or any(decoder.get(k) is None for k in ("num_hidden_layers", "head_size")):
        return None
    model_file = path / decoder.get("filename", "model.onnx")
    layers = int(decoder["num_hidden_layers"])
    cache_dtype = _gqa_cache_dtype(model_file, layers) if model_file.is_file() else None
    if cache_dtype is None:
        return None
    return SlotGraph(
        model_file=model_file,
        prompt_file=prompt_file if (prompt_file := path / PROMPT_FILE).is_file() else None,
        layers=layers,
        kv_heads=int(decoder.get("num_key_value_heads") or decoder["num_attention_heads"]),
        head_size=int(decoder["head_size"]),
        vocab_size=int(model.get("vocab_size", 0)),
        cache_dtype=cache_dtype,
    )


def _gqa_cache_dtype(model_file: Path, layers: int) -> np.dtype | None:
    """The element type of the KV cache of `model_file` when it is a graph `SlotModel` runs."""
    import onnx
    from onnx import helper

    try:
        proto = onnx.load(str(model_file), load_external_data=False)
    except Exception:
        return None
    ops = [node.op_type for node in proto.graph.node]
    graph_inputs = {i.name for i in proto.graph.input}
    allowed = {"input_ids", "attention_mask", LOGITS_FROM} | {
        _KV_INPUT.format(i, k) for i in range(layers) for k in _KINDS
    }
    # LongRoPE ("cos_caches": short and long factors) picks its factors by the mask width, which in a
    # batch is the longest row's: rows of other lengths would be rotated with the wrong ones.
    longrope = any(i.name == "cos_caches" for i in proto.graph.initializer)
    if "GroupQueryAttention" not in ops or longrope or not graph_inputs <= allowed:
        return None
    past = next(i for i in proto.graph.input if i.name == _KV_INPUT.format(0, "key"))
    return np.dtype(helper.tensor_dtype_to_np_dtype(past.type.tensor_type.elem_type))


@dataclass
class HeldCache:
    """A finished sequence's token ids and a copy of their keys and values `[layers * 2, heads, n, d]`."""

    ids: list[int]
    kv: np.ndarray


class SlotModel:
    """The session and the KV rows. Not thread-safe: one owner thread drives it."""

    def __init__(
        self, graph: SlotGraph, *, rows: int, max_length: int, threads: int | None, capacity: int = 256
    ) -> None:
        import onnxruntime as ort

        self._ort = ort
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # not the warning that logits_from is not constant-folded
        self.session = ort.InferenceSession(
            str(graph.model_file), options, providers=["CPUExecutionProvider"]
        )
        self.prompt_session = self.session
        if graph.prompt_file is not None:
            self.prompt_session = ort.InferenceSession(
                str(graph.prompt_file), options, providers=["CPUExecutionProvider"]
            )
        metadata = self.prompt_session.get_modelmeta().custom_metadata_map
        self.prompt_writes_new = metadata.get(PRESENT_METADATA) == NEW_POSITIONS
        # An overridable initializer is not among the session's inputs.
        names = {i.name for i in (*self.session.get_inputs(), *self.session.get_overridable_initializers())}
        self.has_logits_from = LOGITS_FROM in names
        self.graph = graph
        self.rows = rows
        self.max_length = max_length
        self.capacity = 0
        self._initial = min(capacity, max_length)
        self.grown = 0  # times the cache grew
        self._cache: list[np.ndarray] = []
        self._bindings: dict[tuple[Any, int, int], Any] = {}
        # Per row count, a decode step's binding with its logits output and `logits_from` bound once.
        self._steps: dict[int, tuple[Any, np.ndarray]] = {}
        self._ones = np.ones((1, max_length + 1), np.int64)  # one row's mask, sliced to its width
        self._resize(self._initial, [])

    # ---- cache layout ------------------------------------------------------------------------
    # The arrays are anonymous memory maps: pages no row has written stay unmapped, so memory follows
    # the positions in use rather than rows x capacity. (np.zeros may reuse freed heap memory, which
    # calloc then clears page by page: resident at once.)
    def ensure(self, length: int, used: list[int]) -> None:
        """Room for `length` positions in every row (doubling, up to `max_length`); `used[r]`: the
        positions row r holds (what a larger cache copies)."""
        if length > self.max_length:
            raise ValueError(f"{length} positions exceed the model's {self.max_length}")
        if length > self.capacity:
            target = self.capacity
            while target < length:
                target *= 2
            self._resize(min(target, self.max_length), used)
            self.grown += 1

    def shrink(self) -> None:
        """Back to the initial capacity, every row empty (when nothing runs)."""
        if self.capacity > self._initial:
            self._resize(self._initial, [])

    def _resize(self, capacity: int, used: list[int]) -> None:
        g = self.graph
        shape = (self.rows, g.kv_heads, capacity, g.head_size)
        resized = [_mapped_zeros(shape, g.cache_dtype) for _ in range(2 * g.layers)]
        for old, new in zip(self._cache, resized, strict=False):
            for row, length in enumerate(used):
                new[row, :, :length] = old[row, :, :length]
        self._cache, self.capacity = resized, capacity
        self._bindings.clear()  # they point into the old arrays
        self._steps.clear()

    def move(self, source: int, dest: int, length: int) -> None:
        """Copy row `source`'s first `length` positions into row `dest`."""
        for array in self._cache:
            array[dest, :, :length] = array[source, :, :length]

    def save(self, row: int, ids: list[int]) -> HeldCache:
        n = len(ids)
        return HeldCache(list(ids), np.stack([array[row, :, :n] for array in self._cache]))

    def restore(self, held: HeldCache, row: int, length: int, used: list[int]) -> None:
        """Put the first `length` positions of `held` into `row`."""
        self.ensure(length, used)
        for array, saved in zip(self._cache, held.kv, strict=True):
            array[row, :, :length] = saved[:, :length]

    # ---- runs --------------------------------------------------------------------------------
    def prefill(
        self, row: int, ids: list[int], past: int, want_logits: bool, used: list[int]
    ) -> np.ndarray | None:
        """Read `ids` into `row` after its first `past` positions; the last position's logits `[vocab]`
        when `want_logits`."""
        count = len(ids)
        self.ensure(past + count, used)
        binding = self._binding(self.prompt_session, row, 1)
        tokens = np.asarray([ids], np.int64)
        mask = np.ones((1, past + count), np.int64)
        first = count - 1 if self.has_logits_from else 0
        logits = np.empty((1, count - first, self.graph.vocab_size), np.float32)
        if not self.prompt_writes_new:
            self._run(self.prompt_session, binding, tokens, mask, logits, first)
            return logits[0, -1] if want_logits else None
        new = self._bind_new_positions(binding, count)
        self._run(self.prompt_session, binding, tokens, mask, logits, first)
        for array, positions in zip(self._cache, new, strict=True):
            array[row, :, past : past + count] = positions[0]
        return logits[0, -1] if want_logits else None

    def _bind_new_positions(self, binding: Any, count: int) -> list[np.ndarray]:
        """Fresh arrays bound as the present outputs, for a prompt graph that outputs only the `count`
        new positions."""
        g = self.graph
        arrays = [np.empty((1, g.kv_heads, count, g.head_size), g.cache_dtype) for _ in self._cache]
        for index, array in enumerate(arrays):
            name = _KV_OUTPUT.format(index // 2, _KINDS[index % 2])
            binding.bind_ortvalue_output(name, self._ort.OrtValue.ortvalue_from_numpy(array))
        return arrays

    def decode(self, tokens: list[int], lengths: list[int], used: list[int]) -> np.ndarray:
        """Read one token into each of rows 0..n-1 (whose caches hold `lengths[i]` positions); their
        logits `[n, vocab]`, valid until the next decode step. `used`: as for `ensure` (rows after n
        may hold a prompt being read)."""
        n = len(tokens)
        width = max(lengths) + 1
        self.ensure(width, used)
        binding, logits = self._step(n)
        if n == 1:
            mask = self._ones[:, :width]
        else:
            mask = (np.arange(width)[None, :] <= np.asarray(lengths)[:, None]).astype(np.int64)
        binding.bind_cpu_input("input_ids", np.asarray(tokens, np.int64).reshape(n, 1))
        binding.bind_cpu_input("attention_mask", mask)
        self.session.run_with_iobinding(binding)
        return logits[:, 0]

    def _step(self, n: int) -> tuple[Any, np.ndarray]:
        """The binding of a decode step over rows 0..n-1, and the logits array it writes. Its own
        binding (not the prompt reader's, which may be the same session and row): a step's logits
        output and `logits_from` are bound once, which saves per-step work the model waits for."""
        if n not in self._steps:
            binding = self._binding(self.session, 0, n, fresh=True)
            logits = np.empty((n, 1, self.graph.vocab_size), np.float32)
            binding.bind_ortvalue_output("logits", self._ort.OrtValue.ortvalue_from_numpy(logits))
            if self.has_logits_from:
                zero = self._ort.OrtValue.ortvalue_from_numpy(np.asarray(0, np.int64))
                binding.bind_ortvalue_input(LOGITS_FROM, zero)
            self._steps[n] = binding, logits
        return self._steps[n]

    def _run(
        self, session: Any, binding: Any, tokens: np.ndarray, mask: np.ndarray, logits: np.ndarray, first: int
    ) -> None:
        ort = self._ort
        binding.bind_cpu_input("input_ids", tokens)
        binding.bind_cpu_input("attention_mask", mask)
        if self.has_logits_from:
            binding.bind_ortvalue_input(
                LOGITS_FROM, ort.OrtValue.ortvalue_from_numpy(np.asarray(first, np.int64))
            )
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
        session.run_with_iobinding(binding)

    def _binding(self, session: Any, first: int, count: int, fresh: bool = False) -> Any:
        """An IO binding of `session` with rows first..first+count-1 of every cache array as past and
        present (kept for the next call with the same rows, unless `fresh`)."""
        key = (session, first, count)
        binding = None if fresh else self._bindings.get(key)
        if binding is None:
            binding = session.io_binding()
            for layer in range(self.graph.layers):
                for k, kind in enumerate(_KINDS):
                    rows = self._cache[2 * layer + k][first : first + count]
                    value = self._ort.OrtValue.ortvalue_from_numpy(rows)
                    binding.bind_ortvalue_input(_KV_INPUT.format(layer, kind), value)
                    binding.bind_ortvalue_output(_KV_OUTPUT.format(layer, kind), value)
            if not fresh:
                self._bindings[key] = binding
        return binding


def _mapped_zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An array of zeros over its own anonymous memory map (unmapped when the array goes)."""
    size = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer(mmap.mmap(-1, size), dtype).reshape(shape)


def sample(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator | None) -> int:
    """The next token from one row of logits: argmax when greedy, else temperature, top-k, top-p."""
    if not sampling.do_sample or rng is None:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / max(sampling.temperature or 1.0, 1e-6)
    order = np.argsort(-scaled, kind="stable")
    if sampling.top_k:
        order = order[: sampling.top_k]
    top = scaled[order]
    probs = np.exp(top - top[0])
    probs /= probs.sum()
    if sampling.top_p is not None and sampling.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), sampling.top_p)) + 1
        probs = probs[:keep] / probs[:keep].sum()
        order = order[:keep]
    return int(order[rng.choice(len(probs), p=probs)])
