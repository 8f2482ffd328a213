"""A small GGUF decoder with random weights, written with the `gguf` package's own writer.

The tokenizer is a byte-level BPE trained here on a few sentences with SmolLM2's pre-tokenization
(every digit alone, then the GPT-2 regex) and a ChatML template, so the converted folder chats like
the real thing, only in gibberish.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "In 2024 there were 365 days, and 12 months; 7 days make a week.",
    "def add(a, b):\n    return a + b\n",
    "Hello, world! How are you today? I'm fine, thanks.",
    "Numbers like 3.14159 and 2718 are split into single digits.",
    "Émile naïvely typed 日本語 and emojis 🙂 into the notebook.",
]

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS, CONTEXT = 64, 4, 2, 128, 2, 256


def train_tokenizer(vocab_size: int = 400):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\p{N}"), "isolated"),
            pre_tokenizers.Split(Regex(GPT2_REGEX), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return tok


K_TYPES = ("Q4_K", "Q5_K", "Q6_K")
# "mixed" and "kmixed" cycle through these, so neighbouring matrices (Q, K, V; gate, up) differ.
MIXED = ("Q4_1", "Q8_0", "Q4_0", "F16", "F32")
KMIXED = ("Q4_K", "Q6_K", "Q5_K", "Q4_K", "Q5_0", "Q5_1", "Q8_0", "Q4_0", "Q4_K")
GEMMA3_LAYERS, GEMMA3_HEAD_DIM, GEMMA3_WINDOW = 6, 32, 4
PHI3_ORIGINAL_CONTEXT = 8


def write_tiny_gguf(
    path: Path,
    qtype: str = "Q4_1",
    *,
    arch: str = "llama",
    seed: int = 0,
    tie_embeddings: bool = True,
    pre: str = "smollm",
    vocab: str = "bpe",
    rope: str = "none",
) -> Path:
    """Write the file; `qtype` is the type of every matrix (F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
    Q4_K, Q5_K, Q6_K) or "mixed" / "kmixed" (see `MIXED`, `KMIXED`). K-quant files are 256 wide, since
    a K-quant row holds whole super-blocks of 256.

    `arch`: llama, mistral, qwen2 (Q/K/V biases), qwen3 (Q/K norms), phi3 (fused QKV and gate/up),
    gemma3 (Q/K norms, sandwich norms, GeGLU, six layers of which the last is global and the rest
    attend to `GEMMA3_WINDOW` tokens, head_dim wider than hidden / heads). `rope`: "none", "linear"
    (factor 2), "llama3" (a `rope_freqs` tensor) or "longrope" (phi3's short and long factors beyond
    `PHI3_ORIGINAL_CONTEXT` tokens).

    `vocab`: "bpe" (the byte-level BPE above) or "spm" (`spmvocab`'s SentencePiece model, written as
    llama.cpp's convert script writes Llama 2's and Mistral's: pieces, scores, types, no merges).
    """
    import gguf
    from gguf import GGMLQuantizationType as T

    from .kquants import quantize as quantize_k

    wide = qtype in K_TYPES or qtype == "kmixed"
    hidden, ffn = (256, 256) if wide else (HIDDEN, FFN)
    layers = GEMMA3_LAYERS if arch == "gemma3" else LAYERS
    head_dim = GEMMA3_HEAD_DIM if arch == "gemma3" else hidden // HEADS

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-test")
    w.add_block_count(layers)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5 if arch != "gemma3" else 1e-6)
    w.add_rope_freq_base(10000.0 if arch != "gemma3" else 1e6)
    if arch == "gemma3":
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_sliding_window(GEMMA3_WINDOW)
    if rope == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(2.0)
    if rope == "longrope":
        w.add_rope_scaling_orig_ctx_len(PHI3_ORIGINAL_CONTEXT)
        w.add_rope_scaling_attn_factors(1.19)
    tokens = _add_spm_vocab(w) if vocab == "spm" else _add_bpe_vocab(w, pre)
    w.add_uint32(f"{arch}.vocab_size", len(tokens))

    rng = np.random.default_rng(seed)
    kinds = KMIXED if qtype == "kmixed" else MIXED

    def add(name: str, array: np.ndarray, index: int = 0) -> None:
        kind = T[kinds[index % len(kinds)] if qtype in ("mixed", "kmixed") else qtype]
        if array.ndim == 1 or kind == T.F32:
            w.add_tensor(name, array.astype(np.float32))
        elif kind == T.F16:
            w.add_tensor(name, array.astype(np.float16))
        elif kind.name in K_TYPES:
            w.add_tensor(name, quantize_k(array, kind.name), raw_dtype=kind)
        else:
            w.add_tensor(name, gguf.quants.quantize(array.astype(np.float32), kind), raw_dtype=kind)

    def matrix(rows: int, cols: int, scale: float) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def norm(size: int = hidden) -> np.ndarray:
        return 1.0 + 0.1 * rng.standard_normal(size)

    q_rows, kv_rows = HEADS * head_dim, KV_HEADS * head_dim
    add("token_embd.weight", matrix(len(tokens), hidden, 1.0 if arch != "gemma3" else 0.1), 1)
    if rope == "llama3":
        add("rope_freqs.weight", np.exp(rng.uniform(0.0, 2.0, head_dim // 2)))
    if rope == "longrope":
        add("rope_factors_short.weight", np.exp(rng.uniform(0.0, 0.5, head_dim // 2)))
        add("rope_factors_long.weight", np.exp(rng.uniform(0.5, 2.0, head_dim // 2)))
    for i in range(layers):
        p = f"blk.{i}"
        add(f"{p}.attn_norm.weight", norm())
        add(f"{p}.ffn_norm.weight", norm())
        if arch == "phi3":
            add(f"{p}.attn_qkv.weight", matrix(q_rows + 2 * kv_rows, hidden, 0.3), i)
        else:
            add(f"{p}.attn_q.weight", matrix(q_rows, hidden, 0.3), i)
            add(f"{p}.attn_k.weight", matrix(kv_rows, hidden, 0.3), i + 1)
            add(f"{p}.attn_v.weight", matrix(kv_rows, hidden, 0.2), i + 2)
        add(f"{p}.attn_output.weight", matrix(hidden, q_rows, 0.1), i + 3)
        if arch == "phi3":
            add(f"{p}.ffn_up.weight", matrix(2 * ffn, hidden, 0.2), i + 4)
        else:
            add(f"{p}.ffn_gate.weight", matrix(ffn, hidden, 0.2), i + 4)
            add(f"{p}.ffn_up.weight", matrix(ffn, hidden, 0.2), i)
        add(f"{p}.ffn_down.weight", matrix(hidden, ffn, 0.1), i + 1)
        if arch == "qwen2":
            add(f"{p}.attn_q.bias", 0.1 * rng.standard_normal(q_rows))
            add(f"{p}.attn_k.bias", 0.1 * rng.standard_normal(kv_rows))
            add(f"{p}.attn_v.bias", 0.1 * rng.standard_normal(kv_rows))
        if arch in ("qwen3", "gemma3"):
            add(f"{p}.attn_q_norm.weight", norm(head_dim))
            add(f"{p}.attn_k_norm.weight", norm(head_dim))
        if arch == "gemma3":
            add(f"{p}.post_attention_norm.weight", norm())
            add(f"{p}.post_ffw_norm.weight", norm())
    add("output_norm.weight", norm())
    if not tie_embeddings:
        add("output.weight", matrix(len(tokens), hidden, 0.5), 2)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _add_bpe_vocab(w, pre: str) -> list[str]:
    tok = train_tokenizer()
    spec = json.loads(tok.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIAL else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    return tokens


def _add_spm_vocab(w) -> list[str]:
    from .spmvocab import MISTRAL_TEMPLATE, gguf_vocab

    tokens, scores, types = gguf_vocab()
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(MISTRAL_TEMPLATE)
    return tokens
