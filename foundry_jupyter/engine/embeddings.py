"""Embedding models: an encoder ONNX graph on onnxruntime, tokenized with `tokenizers`.

onnxruntime-genai has no embedding API, but it installs onnxruntime, which runs encoder graphs. A
folder is an embedding model when it holds `embedding_config.json` (written by
`foundry_jupyter.models.encoders.bert`): pooling (`mean`, `cls`, `max`), whether vectors are L2-normalized,
the tokenizer's truncation length and the model's dimensions.

`EmbeddingModel.embed(inputs, dimensions=None)` is safe to call from many threads at once: requests
queue for one worker thread, which runs whatever has queued as one batch (sorted by length and cut
into sub-batches, so short texts are not padded to a long one's length). Concurrent callers therefore
share runs without any waiting on purpose: a request that finds the model idle runs at once.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ContextLengthExceeded, InvalidRequest, ModelNotFound, ProviderUnavailable
from .hardware import cpu_threads, normalize_provider

EMBEDDING_CONFIG = "embedding_config.json"
MODEL_FILE = "model.onnx"
SUB_BATCH = 32  # sequences per onnxruntime run; sentence-transformers' own default batch size
MAX_QUEUED_SEQUENCES = 256  # one worker pass takes at most this many sequences

EmbeddingInput = str | Sequence[int]
TOKEN_STATES = ("last_hidden_state", "token_embeddings")  # output names of an encoder's token states


def is_embedding_folder(path: Path | str) -> bool:
    return (Path(path) / EMBEDDING_CONFIG).is_file()


@dataclass(frozen=True)
class EmbeddingConfig:
    pooling: str
    normalize: bool
    dimensions: int
    max_seq_length: int  # text is truncated to this many tokens, as sentence-transformers does
    context_length: int  # token arrays longer than this are refused
    vocab_size: int
    pad_token_id: int

    @classmethod
    def read(cls, path: Path) -> EmbeddingConfig:
        data = json.loads((path / EMBEDDING_CONFIG).read_text(encoding="utf-8"))
        return cls(
            pooling=str(data.get("pooling", "mean")),
            normalize=bool(data.get("normalize", True)),
            dimensions=int(data["dimensions"]),
            max_seq_length=int(data.get("max_seq_length", 512)),
            context_length=int(data.get("context_length", data.get("max_seq_length", 512))),
            vocab_size=int(data["vocab_size"]),
            pad_token_id=int(data.get("pad_token_id", 0)),
        )


@dataclass
class _Job:
    ids: list[list[int]]
    future: Future


class EmbeddingModel:
    """One embedding model in this process. `embed` returns (vectors, prompt tokens)."""

    def __init__(
        self, path: Path, session: Any, tokenizer: Any, config: EmbeddingConfig, model_id: str
    ) -> None:
        self.path = path
        self.model_id = model_id
        self.config = config
        self.execution_provider = "cpu"
        self.cpu_threads: int | None = None  # every core: one process per model is enough
        self._session = session
        self._tokenizer = tokenizer
        self._input_names = {i.name for i in session.get_inputs()}
        # The token states: exports from Hugging Face repos may add pooled outputs after them.
        outputs = [o.name for o in session.get_outputs()]
        self._output = next((n for n in outputs if n in TOKEN_STATES), outputs[0])
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name="embed", daemon=True)
        self._worker.start()

    @classmethod
    def load(cls, path: Path | str, *, ep: str | None = None, model_id: str | None = None) -> EmbeddingModel:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = Path(path)
        if not is_embedding_folder(path):
            message = f"No embedding model at {path}: {EMBEDDING_CONFIG} is missing."
            raise ModelNotFound(message, param="model")
        if ep and normalize_provider(ep, strict=False) != "cpu":
            raise ProviderUnavailable(f"Embedding models run on CPU here, not on {ep}", param="ep")
        config = EmbeddingConfig.read(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(config.max_seq_length)
        return cls(path, session, tokenizer, config, model_id or path.name)

    @property
    def context_length(self) -> int:
        return self.config.context_length

    @property
    def dimensions(self) -> int:
        return self.config.dimensions

    # ---- tokens --------------------------------------------------------------------------
    def tokenize(self, inputs: Sequence[EmbeddingInput]) -> list[list[int]]:
        """Token ids per input: text through the tokenizer (truncated), token arrays checked as given."""
        texts = [(i, x) for i, x in enumerate(inputs) if isinstance(x, str)]
        ids: list[list[int] | None] = [None] * len(inputs)
        if texts:
            encodings = self._tokenizer.encode_batch([t for _, t in texts])
            for (i, _), encoding in zip(texts, encodings, strict=True):
                ids[i] = list(encoding.ids)
        for i, x in enumerate(inputs):
            if ids[i] is None:
                tokens = [int(t) for t in x]
                if not tokens:
                    raise InvalidRequest(f"input[{i}] is an empty token array", param="input")
                if len(tokens) > self.config.context_length:
                    raise ContextLengthExceeded(
                        f"input[{i}] has {len(tokens)} tokens; this model takes at most "
                        f"{self.config.context_length}",
                        param="input",
                    )
                if min(tokens) < 0 or max(tokens) >= self.config.vocab_size:
                    raise InvalidRequest(
                        f"input[{i}] holds token ids outside this model's vocabulary "
                        f"(0..{self.config.vocab_size - 1})",
                        param="input",
                    )
                ids[i] = tokens
        return [x for x in ids if x is not None]

    def count_tokens(self, inputs: Sequence[EmbeddingInput]) -> int:
        return sum(len(x) for x in self.tokenize(inputs))

    # ---- vectors -------------------------------------------------------------------------
    def embed(
        self, inputs: Sequence[EmbeddingInput], *, dimensions: int | None = None
    ) -> tuple[np.ndarray, int]:
        """float32 vectors (one row per input) and the number of tokens read."""
        if dimensions is not None and not 1 <= dimensions <= self.config.dimensions:
            raise InvalidRequest(
                f"dimensions must be between 1 and {self.config.dimensions} for this model",
                param="dimensions",
            )
        ids = self.tokenize(inputs)
        if not ids:
            return np.zeros((0, dimensions or self.config.dimensions), np.float32), 0
        job = _Job(ids, Future())
        self._queue.put(job)
        vectors: np.ndarray = job.future.result()
        if dimensions is not None and dimensions < vectors.shape[1]:
            vectors = _l2(vectors[:, :dimensions])  # shortened vectors are renormalized, as OpenAI's are
        return vectors, sum(len(x) for x in ids)

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            count = len(job.ids)
            while count < MAX_QUEUED_SEQUENCES:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                jobs.append(more)
                count += len(more.ids)
            try:
                vectors = self._run([ids for j in jobs for ids in j.ids])
            except BaseException as exc:
                for j in jobs:
                    j.future.set_exception(exc)
                continue
            start = 0
            for j in jobs:
                j.future.set_result(vectors[start : start + len(j.ids)])
                start += len(j.ids)

    def _run(self, sequences: list[list[int]]) -> np.ndarray:
        out = np.empty((len(sequences), self.config.dimensions), np.float32)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        for first in range(0, len(order), SUB_BATCH):
            chunk = order[first : first + SUB_BATCH]
            out[chunk] = self._run_padded([sequences[i] for i in chunk])
        return out

    def _run_padded(self, sequences: list[list[int]]) -> np.ndarray:
        width = max(len(s) for s in sequences)
        ids = np.full((len(sequences), width), self.config.pad_token_id, np.int64)
        mask = np.zeros((len(sequences), width), np.int64)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run([self._output], feeds)[0]
        pooled = pool(hidden, mask, self.config.pooling)
        return _l2(pooled) if self.config.normalize else pooled

    def close(self) -> None:
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=5)


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Token states (batch x sequence x dims) to one vector per sequence, padding left out."""
    if mode == "cls":
        return hidden[:, 0].astype(np.float32)
    weights = mask[..., None].astype(np.float32)
    if mode == "max":
        return np.where(weights > 0, hidden, -np.inf).max(axis=1).astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    return (summed / np.clip(weights.sum(axis=1), 1e-9, None)).astype(np.float32)


def _l2(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
