"""A sentence-transformers BERT folder to an ONNX embedding folder, without torch.

`convert_sentence_transformers(src, dest)` reads `model.safetensors` (numpy only), `config.json`,
`tokenizer.json`, the pooling config (`1_Pooling/config.json`), `sentence_bert_config.json`
(`max_seq_length`) and `modules.json` (whether a `Normalize` module follows), and writes:

- `model.onnx`: the BERT encoder with onnxruntime's fused CPU operators (com.microsoft `Attention`,
  `SkipLayerNormalization`, `BiasGelu`), inputs `input_ids`, `attention_mask`, `token_type_ids`
  (int64, batch x sequence, right-padded), output `last_hidden_state`;
- `tokenizer.json` as given;
- `embedding_config.json` (`EMBEDDING_CONFIG`): pooling, normalization, lengths and dimensions, read
  by `foundry_jupyter.engine.embeddings`. Its presence is what makes the folder an embedding model.

A pure converter: it knows nothing of the cache or the catalog.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ...engine.embeddings import EMBEDDING_CONFIG, MODEL_FILE
from ...errors import InvalidRequest

OPSET = 17
POOLING_MODES = ("mean", "cls", "max")


def read_pooling(src: Path) -> tuple[str, bool]:
    """(pooling mode, normalize) as the folder's sentence-transformers modules say."""
    modules: list[dict[str, Any]] = []
    if (src / "modules.json").is_file():
        modules = json.loads((src / "modules.json").read_text(encoding="utf-8"))
    normalize = any(str(m.get("type", "")).endswith(".Normalize") for m in modules)
    pooling_dir = next(
        (src / m.get("path", "") for m in modules if str(m.get("type", "")).endswith(".Pooling")),
        src / "1_Pooling",
    )
    config: dict[str, Any] = {}
    if (pooling_dir / "config.json").is_file():
        config = json.loads((pooling_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("pooling_mode_cls_token"):
        mode = "cls"
    elif config.get("pooling_mode_max_tokens"):
        mode = "max"
    else:
        mode = "mean"  # sentence-transformers' own default
    return mode, normalize


def convert_sentence_transformers(src: Path | str, dest: Path | str, *, progress: Any = None) -> Path:
    """Write the ONNX embedding folder for the sentence-transformers BERT folder `src` into `dest`."""
    from safetensors.numpy import load_file

    src, dest = Path(src), Path(dest)
    config_path = src / "config.json"
    weights_path = src / "model.safetensors"
    for needed in (config_path, weights_path, src / "tokenizer.json"):
        if not needed.is_file():
            raise InvalidRequest(f"{src} is not a sentence-transformers folder: {needed.name} is missing")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("model_type") != "bert":
        raise InvalidRequest(f"Only BERT encoders convert to ONNX here, not {config.get('model_type')!r}")
    mode, normalize = read_pooling(src)
    max_seq = int(config.get("max_position_embeddings", 512))
    st_config = src / "sentence_bert_config.json"
    if st_config.is_file():
        max_seq = min(max_seq, int(json.loads(st_config.read_text(encoding="utf-8"))["max_seq_length"]))
    if progress:
        progress("reading weights")
    weights = {_strip_prefix(k): v for k, v in load_file(str(weights_path)).items()}
    if progress:
        progress("writing the ONNX graph")
    dest.mkdir(parents=True, exist_ok=True)
    model = build_bert_graph(config, weights)
    (dest / MODEL_FILE).write_bytes(model.SerializeToString())
    shutil.copyfile(src / "tokenizer.json", dest / "tokenizer.json")
    embedding_config = {
        "model_type": "bert",
        "pooling": mode,
        "normalize": normalize,
        "dimensions": int(config["hidden_size"]),
        "max_seq_length": max_seq,
        "context_length": int(config.get("max_position_embeddings", 512)),
        "vocab_size": int(config["vocab_size"]),
        "pad_token_id": int(config.get("pad_token_id", 0)),
    }
    (dest / EMBEDDING_CONFIG).write_text(json.dumps(embedding_config, indent=2), encoding="utf-8")
    return dest


def _strip_prefix(name: str) -> str:
    # HF's BertModel checkpoints may prefix names with "bert." (or "0.auto_model." in old exports).
    for prefix in ("bert.", "0.auto_model.", "auto_model."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def build_bert_graph(config: dict[str, Any], weights: dict[str, np.ndarray]) -> Any:
    """The BERT encoder as an ONNX `ModelProto` over `weights` (HF BertModel names, float32)."""
    from onnx import TensorProto, helper, numpy_helper

    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    if config.get("hidden_act", "gelu") != "gelu":
        raise InvalidRequest(f"Unsupported activation {config.get('hidden_act')!r} (only exact gelu)")
    nodes: list[Any] = []
    inits: list[Any] = []

    def w(name: str, array: np.ndarray | None = None) -> str:
        value = weights[name] if array is None else array
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def node(op: str, inputs: list[str], output: str, domain: str = "", **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        return output

    ms = "com.microsoft"
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "one"))
    inits.append(numpy_helper.from_array(np.array(0, dtype=np.int64), "zero_s"))
    inits.append(numpy_helper.from_array(np.array(1, dtype=np.int64), "one_s"))
    # Embeddings: word + position + token type, then LayerNorm.
    seq = node("Gather", [node("Shape", ["input_ids"], "ids_shape"), "one"], "seq_len_1d")
    seq_scalar = node("Squeeze", [seq], "seq_len")
    positions = node("Range", ["zero_s", seq_scalar, "one_s"], "position_ids")
    words = node("Gather", [w("embeddings.word_embeddings.weight"), "input_ids"], "emb_words")
    pos = node("Gather", [w("embeddings.position_embeddings.weight"), positions], "emb_pos")
    types = node("Gather", [w("embeddings.token_type_embeddings.weight"), "token_type_ids"], "emb_types")
    summed = node("Add", [node("Add", [words, pos], "emb_wp"), types], "emb_sum")
    x = node(
        "LayerNormalization",
        [summed, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias")],
        "emb_ln",
        axis=-1,
        epsilon=eps,
    )
    mask = node("Cast", ["attention_mask"], "mask_i32", to=TensorProto.INT32)
    qkv = ("query", "key", "value")
    for i in range(layers):
        p = f"encoder.layer.{i}."

        def t(name: str, p: str = p) -> np.ndarray:
            return weights[f"{p}{name}.weight"].T  # HF linears are (out, in); MatMul wants (in, out)

        qkv_w = np.concatenate([t(f"attention.self.{n}") for n in qkv], 1)
        qkv_b = np.concatenate([weights[f"{p}attention.self.{n}.bias"] for n in qkv])
        attn_inputs = [x, w(f"{p}qkv.weight", qkv_w), w(f"{p}qkv.bias", qkv_b), mask]
        attn = node("Attention", attn_inputs, f"l{i}_attn", domain=ms, num_heads=heads)
        proj = node("MatMul", [attn, w(f"{p}attn_out.weight", t("attention.output.dense"))], f"l{i}_proj")
        ln = [w(f"{p}attention.output.LayerNorm.{n}") for n in ("weight", "bias")]
        skip_inputs = [proj, x, *ln, w(f"{p}attention.output.dense.bias")]
        x = node("SkipLayerNormalization", skip_inputs, f"l{i}_ln1", domain=ms, epsilon=eps)
        up = node("MatMul", [x, w(f"{p}up.weight", t("intermediate.dense"))], f"l{i}_up")
        act = node("BiasGelu", [up, w(f"{p}intermediate.dense.bias")], f"l{i}_gelu", domain=ms)
        down = node("MatMul", [act, w(f"{p}down.weight", t("output.dense"))], f"l{i}_down")
        ln = [w(f"{p}output.LayerNorm.{n}") for n in ("weight", "bias")]
        out = f"l{i}_ln2" if i < layers - 1 else "last_hidden_state"
        x = node(
            "SkipLayerNormalization", [down, x, *ln, w(f"{p}output.dense.bias")], out, domain=ms, epsilon=eps
        )
    dims = ["batch", "sequence"]
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in names]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*dims, hidden])
    graph = helper.make_graph(nodes, "bert", inputs, [output], inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(ms, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="foundry-jupyter")
    model.ir_version = 8
    return model
