"""The built-in `tiny` model: a real, random-weight decoder written offline in about a second.

Tests and smoke checks need a model that onnxruntime-genai loads and runs like any other, without a
hub, torch or network. This module writes one: a byte-level BPE tokenizer trained with `tokenizers`
on a fixed corpus (with a ChatML chat template), and a two-layer llama-style decoder written with
`onnx` + numpy (token and position embeddings, causal attention over a growing KV cache, RMS norm,
SiLU MLP, LM head) from seeded weights. Every build writes the same bytes.

Its output is gibberish; what it offers is structure: a chat template, a KV cache, a context limit,
an end-of-sequence token, and text that streams the same as it decodes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

TINY_ALIAS = "tiny"
TINY_ID = "tiny-generic-cpu:1"

# Shape of the model. Small enough to build and run in a blink, big enough to behave like a model.
VOCAB_SIZE = 768
HIDDEN = 64
HEADS = 4
HEAD_SIZE = HIDDEN // HEADS
LAYERS = 2
MLP = 128
CONTEXT_LENGTH = 1024
SEED = 20241

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 0, 1, 2
ENDOFTEXT_ID, IM_START_ID, IM_END_ID = 0, 1, 2
# Fill-in-the-middle tokens (StarCoder's spelling), added after training at the end of the vocabulary,
# so the trained tokens, and every weight and answer of a prompt without them, stay as they were.
FIM_TOKENS = ("<fim_prefix>", "<fim_suffix>", "<fim_middle>")  # ids VOCAB_SIZE, +1, +2
MODEL_VOCAB = VOCAB_SIZE + len(FIM_TOKENS)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Logit offsets. A token that is not valid UTF-8 on its own would make streamed text differ from
# decoded text; control characters garble terminals; chat-structure tokens do not belong in answers.
_INVALID_UTF8_BIAS = -1.0e4
_STRUCTURE_BIAS = -1.0e4
_EOS_BIAS = -4.0  # rare but reachable: some answers end by themselves

_WORD_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had "
    "by word but not what all were we when your can said there use an each which she do how their if "
    "will up other about out many then them these so some her would make like him into time has look "
    "two more write go see number no way could people my than first water been call who oil its now "
    "find long down day did get come made may part hello world model token stream json name age city "
    "true false null notebook jupyter kernel server local foundry answer question data cell python "
    "café naïve résumé über déjà vu 東京 😀"
)
_PUNCT = (".", ",", "!", "?", ":", ";", "")
_JSON_SNIPPETS = (
    '{"name": "Ada", "age": 36}',
    '{"a": [1, 2, 3], "b": {"c": null}}',
    '[true, false, null, 0.5, -7, "x"]',
    '{"city": "Paris", "ok": true}',
)


def _corpus() -> list[str]:
    """A fixed training corpus: pseudo-sentences from a seeded generator, plus some JSON."""
    import numpy as np

    words_pool = _WORD_TEXT.split()
    rng = np.random.default_rng(SEED)
    lines: list[str] = []
    for _ in range(1500):
        n = int(rng.integers(3, 14))
        words = [words_pool[int(i)] for i in rng.integers(0, len(words_pool), size=n)]
        words[0] = words[0].capitalize()
        lines.append(" ".join(words) + _PUNCT[int(rng.integers(0, len(_PUNCT)))])
        if rng.random() < 0.1:
            lines.append(_JSON_SNIPPETS[int(rng.integers(0, len(_JSON_SNIPPETS)))])
        if rng.random() < 0.05:
            lines.append(" ".join(str(int(x)) for x in rng.integers(0, 1000, size=5)))
    return lines


def _train_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    if tokenizer.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(f"the tiny tokenizer has {tokenizer.get_vocab_size()} tokens, not {VOCAB_SIZE}")
    tokenizer.add_special_tokens(list(FIM_TOKENS))
    return tokenizer


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, inverted: the character each byte is spelled with in the vocab."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _is_control(ch: str) -> bool:
    """Control characters other than newline and tab: noise in a terminal or a notebook."""
    return (ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 0x7F


def _logit_bias(tokenizer: Any) -> Any:
    import numpy as np

    byte_of = _byte_decoder()
    bias = np.zeros(MODEL_VOCAB, dtype=np.float32)
    for token, token_id in tokenizer.get_vocab().items():
        if token in SPECIAL_TOKENS or token in FIM_TOKENS:
            continue
        raw = bytes(byte_of[ch] for ch in token)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bias[token_id] = _INVALID_UTF8_BIAS
            continue
        if any(_is_control(ch) for ch in text):
            bias[token_id] = _INVALID_UTF8_BIAS
    bias[ENDOFTEXT_ID] = _STRUCTURE_BIAS
    bias[IM_START_ID] = _STRUCTURE_BIAS
    bias[IM_END_ID] = _EOS_BIAS
    bias[VOCAB_SIZE:] = _STRUCTURE_BIAS
    return bias


def _build_onnx(bias: Any, context_length: int = CONTEXT_LENGTH) -> Any:
    """The decoder graph, in plain ONNX ops (opset 17) so any onnxruntime build runs it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED)
    inits: list[Any] = []
    nodes: list[Any] = []

    def weight(name: str, shape: tuple[int, ...], scale: float) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def rms_norm(x: str, prefix: str) -> str:
        sq = node("Mul", [x, x], f"{prefix}.sq")
        mean = node("ReduceMean", [sq], f"{prefix}.mean", axes=[-1], keepdims=1)
        eps = node("Add", [mean, "eps"], f"{prefix}.eps")
        root = node("Sqrt", [eps], f"{prefix}.root")
        normed = node("Div", [x, root], f"{prefix}.normed")
        gain = const(f"{prefix}.weight", np.ones(HIDDEN, dtype=np.float32))
        return node("Mul", [normed, gain], f"{prefix}.out")

    const("eps", np.array(1e-5, dtype=np.float32))
    const("zero_i", np.array(0, dtype=np.int64))
    const("one_i", np.array(1, dtype=np.int64))
    const("zero_f", np.array(0.0, dtype=np.float32))
    const("neg_inf", np.array(-1e9, dtype=np.float32))
    const("attn_scale", np.array(1.0 / np.sqrt(HEAD_SIZE), dtype=np.float32))
    const("split_heads", np.array([0, 0, HEADS, HEAD_SIZE], dtype=np.int64))
    const("merge_heads", np.array([0, 0, HIDDEN], dtype=np.int64))
    const("axes_0", np.array([0], dtype=np.int64))
    const("axes_1", np.array([1], dtype=np.int64))
    const("axes_12", np.array([1, 2], dtype=np.int64))
    const("axes_13", np.array([1, 3], dtype=np.int64))
    const("heads_1", np.array([HEADS], dtype=np.int64))
    const("head_size_1", np.array([HEAD_SIZE], dtype=np.int64))
    const("pad_id", np.array(ENDOFTEXT_ID, dtype=np.int64))

    # Embeddings: token + learned absolute position.
    # The FIM tokens' rows and columns come from streams of their own (see FIM_TOKENS).
    embed = weight("embed_tokens", (VOCAB_SIZE, HIDDEN), 1.0)
    fim_rows = np.random.default_rng(SEED + 2).standard_normal((len(FIM_TOKENS), HIDDEN))
    inits.append(numpy_helper.from_array(fim_rows.astype(np.float32), "embed_tokens_fim"))
    embed = node("Concat", [embed, "embed_tokens_fim"], "embed_tokens_all", axis=0)
    tok = node("Gather", [embed, "input_ids"], "tok_embed")
    positions = weight("embed_positions", (CONTEXT_LENGTH, HIDDEN), 0.5)
    if context_length > CONTEXT_LENGTH:
        # Rows past the default context come from a stream of their own, so every other weight, and
        # so every answer that fits the default context, stays the same as the default build's.
        extra_rows = np.random.default_rng(SEED + 1).standard_normal(
            (context_length - CONTEXT_LENGTH, HIDDEN)
        )
        inits.append(numpy_helper.from_array((extra_rows * 0.5).astype(np.float32), "embed_positions_extra"))
        positions = node("Concat", [positions, "embed_positions_extra"], "embed_positions_all", axis=0)
    pos = node("Gather", [positions, "position_ids"], "pos_embed")
    x = node("Add", [tok, pos], "embed")

    # Rows of a batch are right-padded, each at its own length (og's static-batching Engine does this;
    # a single Generator row is the special case with no padding). Like GroupQueryAttention, each
    # row's new keys go right after its own valid past, so per row b:
    #   length[b] = sum(attention_mask[b]); new[b] = 1 + index of its last non-pad input token;
    #   past[b] = length[b] - new[b]; present[b, t] = past[b, t] if t < past[b] else new[b, t - past[b]].
    total = node("Squeeze", [node("Shape", ["attention_mask"], "total_1", start=1, end=2), "axes_0"], "total")
    seq = node("Squeeze", [node("Shape", ["input_ids"], "seq_1", start=1, end=2), "axes_0"], "seq")
    past_width = node(
        "Squeeze", [node("Shape", ["past_key_values.0.key"], "past_w_1", start=2, end=3), "axes_0"], "past_w"
    )
    length = node("ReduceSum", ["attention_mask", "axes_1"], "row_length", keepdims=1)  # [B, 1]
    steps = node("Add", [node("Range", ["zero_i", seq, "one_i"], "steps_0"), "one_i"], "steps")  # 1..S
    real = node(
        "Cast",
        [node("Not", [node("Equal", ["input_ids", "pad_id"], "is_pad")], "not_pad")],
        "real",
        to=TensorProto.INT64,
    )
    new_count = node(
        "ReduceMax", [node("Mul", [real, steps], "real_steps")], "new_count", axes=[1], keepdims=1
    )
    row_past = node("Sub", [length, new_count], "row_past")  # [B, 1]
    cols = node(
        "Unsqueeze", [node("Range", ["zero_i", total, "one_i"], "cols_0"), "axes_0"], "cols"
    )  # [1, T]
    from_new = node("Add", [past_width, node("Sub", [cols, row_past], "col_minus_past")], "from_new")
    source = node("Where", [node("Less", [cols, row_past], "in_past"), cols, from_new], "source_0")
    last = node("Sub", [node("Add", [past_width, seq], "concat_width"), "one_i"], "concat_last")
    source = node("Min", [node("Max", [source, "zero_i"], "source_1"), last], "source")  # [B, T]
    batch = node("Shape", ["input_ids"], "batch_1", start=0, end=1)
    kv_shape = node("Concat", [batch, "heads_1", "total_1", "head_size_1"], "kv_shape", axis=0)
    kv_index = node("Expand", [node("Unsqueeze", [source, "axes_13"], "kv_index_0"), kv_shape], "kv_index")

    # Additive mask [B, 1, S, T]: query j of row b sees keys t <= past[b] + j that attention_mask keeps.
    query_pos = node("Add", [row_past, node("Sub", [steps, "one_i"], "j")], "q_pos")  # [B, S]
    query_pos = node("Unsqueeze", [query_pos, "axes_13"], "query_pos")  # [B, 1, S, 1]
    causal = node("LessOrEqual", [node("Unsqueeze", [cols, "axes_0"], "cols_3"), query_pos], "causal")
    keep = node("Cast", ["attention_mask"], "keep_1", to=TensorProto.BOOL)
    keep = node("Unsqueeze", [keep, "axes_12"], "keep")
    allowed = node("And", [causal, keep], "allowed")
    mask = node("Where", [allowed, "zero_f", "neg_inf"], "mask")

    def heads(t: str, name: str) -> str:
        return node(
            "Transpose", [node("Reshape", [t, "split_heads"], f"{name}.split")], name, perm=[0, 2, 1, 3]
        )

    for i in range(LAYERS):
        p = f"layers.{i}"
        h = rms_norm(x, f"{p}.attn_norm")
        q = heads(
            node("MatMul", [h, weight(f"{p}.q", (HIDDEN, HIDDEN), HIDDEN**-0.5)], f"{p}.q_proj"), f"{p}.qh"
        )
        k = heads(
            node("MatMul", [h, weight(f"{p}.k", (HIDDEN, HIDDEN), HIDDEN**-0.5)], f"{p}.k_proj"), f"{p}.kh"
        )
        v = heads(
            node("MatMul", [h, weight(f"{p}.v", (HIDDEN, HIDDEN), HIDDEN**-0.5)], f"{p}.v_proj"), f"{p}.vh"
        )
        k_cat = node("Concat", [f"past_key_values.{i}.key", k], f"{p}.k_cat", axis=2)
        v_cat = node("Concat", [f"past_key_values.{i}.value", v], f"{p}.v_cat", axis=2)
        k_all = node("GatherElements", [k_cat, kv_index], f"present.{i}.key", axis=2)
        v_all = node("GatherElements", [v_cat, kv_index], f"present.{i}.value", axis=2)
        k_t = node("Transpose", [k_all], f"{p}.k_t", perm=[0, 1, 3, 2])
        scores = node("Mul", [node("MatMul", [q, k_t], f"{p}.qk"), "attn_scale"], f"{p}.scores_raw")
        probs = node("Softmax", [node("Add", [scores, mask], f"{p}.scores")], f"{p}.probs", axis=-1)
        ctx = node(
            "Transpose", [node("MatMul", [probs, v_all], f"{p}.ctx_h")], f"{p}.ctx_t", perm=[0, 2, 1, 3]
        )
        ctx = node("Reshape", [ctx, "merge_heads"], f"{p}.ctx")
        o = node("MatMul", [ctx, weight(f"{p}.o", (HIDDEN, HIDDEN), HIDDEN**-0.5)], f"{p}.o_proj")
        x = node("Add", [x, o], f"{p}.attn_residual")
        h = rms_norm(x, f"{p}.mlp_norm")
        up = node("MatMul", [h, weight(f"{p}.up", (HIDDEN, MLP), HIDDEN**-0.5)], f"{p}.up_proj")
        act = node("Mul", [up, node("Sigmoid", [up], f"{p}.gate")], f"{p}.silu")
        down = node("MatMul", [act, weight(f"{p}.down", (MLP, HIDDEN), MLP**-0.5)], f"{p}.down_proj")
        x = node("Add", [x, down], f"{p}.mlp_residual")

    h = rms_norm(x, "final_norm")
    head = weight("lm_head", (HIDDEN, VOCAB_SIZE), 2.0 * HIDDEN**-0.5)
    fim_cols = np.random.default_rng(SEED + 3).standard_normal((HIDDEN, len(FIM_TOKENS))) * 2.0 * HIDDEN**-0.5
    inits.append(numpy_helper.from_array(fim_cols.astype(np.float32), "lm_head_fim"))
    head = node("Concat", [head, "lm_head_fim"], "lm_head_all", axis=1)
    raw = node("MatMul", [h, head], "logits_raw")
    inits.append(numpy_helper.from_array(bias, "logit_bias"))
    node("Add", [raw, "logit_bias"], "logits")

    kv_in = ["batch_size", HEADS, "past_sequence_length", HEAD_SIZE]
    kv_out = ["batch_size", HEADS, "total_sequence_length", HEAD_SIZE]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info(
            "attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]
        ),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
    ]
    outputs = [
        helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, ["batch_size", "sequence_length", MODEL_VOCAB]
        )
    ]
    for i in range(LAYERS):
        for kind in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", TensorProto.FLOAT, kv_in)
            )
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", TensorProto.FLOAT, kv_out))
    graph = helper.make_graph(nodes, "tiny-decoder", inputs, outputs, initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="foundry-jupyter", ir_version=8
    )
    onnx.checker.check_model(model)
    return model


def _genai_config(context_length: int) -> dict[str, Any]:
    return {
        "model": {
            "bos_token_id": ENDOFTEXT_ID,
            "context_length": context_length,
            "decoder": {
                "session_options": {
                    "log_id": "onnxruntime-genai",
                    # One thread beats the default pool on a model this small.
                    "intra_op_num_threads": 1,
                    "provider_options": [],
                },
                "filename": "model.onnx",
                "head_size": HEAD_SIZE,
                "hidden_size": HIDDEN,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": HEADS,
                "num_hidden_layers": LAYERS,
                "num_key_value_heads": HEADS,
            },
            "eos_token_id": [IM_END_ID, ENDOFTEXT_ID],
            "pad_token_id": ENDOFTEXT_ID,
            "type": "llama",
            "vocab_size": MODEL_VOCAB,
        },
        "search": {
            "diversity_penalty": 0.0,
            "do_sample": False,
            "early_stopping": True,
            "length_penalty": 1.0,
            "max_length": context_length,
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": False,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 50,
            "top_p": 1.0,
        },
    }


def _tokenizer_config(context_length: int) -> dict[str, Any]:
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(i): {
                "content": tok,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for i, tok in [*enumerate(SPECIAL_TOKENS), *enumerate(FIM_TOKENS, VOCAB_SIZE)]
        },
        "bos_token": "<|endoftext|>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "model_max_length": context_length,
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": "<|endoftext|>",
    }


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def build_tiny_model(dest: Path, *, context_length: int = CONTEXT_LENGTH) -> Path:
    """Write the tiny model folder at `dest` (created or overwritten file by file) and return it.

    The same bytes on every build, on every machine with the same library versions. A longer
    `context_length` gives the same answers within the default context and room for long generations
    (tests that must still be generating when they act on a stream use it).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    tokenizer_json = json.loads(tokenizer.to_str())
    model = _build_onnx(_logit_bias(tokenizer), context_length)
    files = {
        "tokenizer.json": _json_bytes(tokenizer_json),
        "tokenizer_config.json": _json_bytes(_tokenizer_config(context_length)),
        "special_tokens_map.json": _json_bytes(
            {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
        ),
        "genai_config.json": _json_bytes(_genai_config(context_length)),
        "model.onnx": model.SerializeToString(deterministic=True),
    }
    for name, data in files.items():
        _write_atomic(dest / name, data)
    return dest


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
