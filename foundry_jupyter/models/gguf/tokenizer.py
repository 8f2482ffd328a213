"""Rebuild a Hugging Face `tokenizer.json` (and its config) from a GGUF's `tokenizer.ggml.*` metadata.

Byte-level BPE vocabularies (`tokenizer.ggml.model == "gpt2"`): the pre-tokenizer is written in the one
form both `tokenizers` and onnxruntime-genai honour: a Sequence of `Split` regexes that og recognises,
then `ByteLevel(use_regex=False)`. og ignores a `Digits` pre-tokenizer and rejects unknown `\\p{...}`
regexes at load time, so digit splitting is itself a `Split`.

SentencePiece BPE vocabularies (`"llama"`: Llama 2, Mistral, TinyLlama): BPE with byte fallback and
merges recovered from the scores, written as transformers' legacy LlamaTokenizer; og recognises it as
SentencePiece by the decoder's `Replace("▁", " ")` and adds the prefix space because of its `Strip`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .reader import GGUFError, GGUFModel

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
DIGIT_REGEX = r"\p{N}"

# Qwen2's and Llama 3's regexes (digits alone, or in runs of up to three).
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
LLAMA3_REGEX = QWEN2_REGEX.replace(r"|\p{N}|", r"|\p{N}{1,3}|")

# llama.cpp's `tokenizer.ggml.pre` names -> the Split regexes applied before the byte-level mapping.
# The smollm family splits every digit alone before the GPT-2 regex; each of these regexes gave the
# same ids in onnxruntime-genai as in `tokenizers`.
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    **{
        name: (DIGIT_REGEX, GPT2_REGEX)
        for name in ("smollm", "starcoder", "refact", "codeshell", "command-r")
    },
    **{name: (GPT2_REGEX,) for name in ("gpt-2", "olmo", "mpt", "jais", "phi-2")},
    "qwen2": (QWEN2_REGEX,),
    "llama-bpe": (LLAMA3_REGEX,),
}

# Gemma's chat format, for the Gemma GGUFs that carry no template (llama.cpp recognises them by their
# turn tokens): a system message joins the first user turn, the assistant speaks as "model".
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '')"
    " + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
# Tokens that end a turn in the chat formats llama.cpp knows; the ones a model's template writes
# stop its generation.
END_OF_TURN = ("<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<|eom_id|>")

NORMAL, CONTROL, USER_DEFINED = 1, 3, 4  # tokenizer.ggml.token_type values (3 and 4 are added tokens)


def tokenizer_files(model: GGUFModel) -> dict[str, Any]:
    """`tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` contents."""
    kind = model.field("tokenizer.ggml.model")
    if kind not in ("gpt2", "llama"):
        raise GGUFError(
            f"{model.path.name}: tokenizer model {kind!r} is not supported "
            "(only byte-level BPE, 'gpt2', and SentencePiece BPE, 'llama')"
        )
    tokens: list[str] = model.field("tokenizer.ggml.tokens")
    types: list[int] = model.field("tokenizer.ggml.token_type") or [1] * len(tokens)

    def token(key: str) -> str | None:
        index = model.field(f"tokenizer.ggml.{key}_token_id")
        return tokens[index] if index is not None and 0 <= index < len(tokens) else None

    bos, eos, unk, pad = token("bos"), token("eos"), token("unknown"), token("padding")
    # llama.cpp adds BOS to a SentencePiece vocabulary whose file does not say otherwise.
    add_bos = bool(model.field("tokenizer.ggml.add_bos_token", kind == "llama"))
    added = [
        {
            "id": i,
            "content": tokens[i],
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": kind_ == CONTROL,
        }
        for i, kind_ in enumerate(types)
        if kind_ in (CONTROL, USER_DEFINED)
    ]
    parts = _byte_level(model, tokens) if kind == "gpt2" else _sentencepiece(model, tokens, types, unk)
    if add_bos and bos is not None:
        parts["post_processor"] = _prepend_bos(bos, tokens.index(bos))
    tokenizer_json = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, **parts}
    template = chat_template(model)
    config: dict[str, Any] = {
        "add_bos_token": add_bos,
        "add_eos_token": False,
        "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in added},
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": pad,
        "unk_token": unk,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model.hparams.context_length,
        # og reports "Empty chat template" for a config without a tokenizer class. For SentencePiece, og
        # splits the text of a "LlamaTokenizer" into words first (so "a  b" loses SentencePiece's "▁▁"
        # piece); only "GemmaTokenizer" gets whole-text BPE, as SentencePiece does.
        "tokenizer_class": "GPT2Tokenizer" if kind == "gpt2" else "GemmaTokenizer",
    }
    if template:
        config["chat_template"] = template
    special_map: dict[str, Any] = {
        key: value
        for key, value in (("bos_token", bos), ("eos_token", eos), ("pad_token", pad), ("unk_token", unk))
        if value is not None
    }
    special_map["additional_special_tokens"] = [t["content"] for t in added if t["special"]]
    return {
        "tokenizer.json": tokenizer_json,
        "tokenizer_config.json": config,
        "special_tokens_map.json": special_map,
    }


def chat_template(model: GGUFModel) -> str | None:
    """The file's chat template, or Gemma's for a Gemma vocabulary without one."""
    template = model.field("tokenizer.chat_template")
    if not template and "<start_of_turn>" in (model.field("tokenizer.ggml.tokens") or []):
        return GEMMA_TEMPLATE
    return template


def end_of_turn_ids(model: GGUFModel) -> list[int]:
    """Ids of the end-of-turn tokens the chat template writes."""
    template = chat_template(model) or ""
    tokens: list[str] = model.field("tokenizer.ggml.tokens") or []
    return [tokens.index(t) for t in END_OF_TURN if t in template and t in tokens]


def _byte_level(model: GGUFModel, tokens: list[str]) -> dict[str, Any]:
    pre = model.field("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise GGUFError(
            f"{model.path.name}: pre-tokenizer {pre!r} is not supported "
            f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})"
        )
    merges: list[str] = model.field("tokenizer.ggml.merges") or []
    splits = [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}
        for regex in PRE_TOKENIZERS[pre]
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    return {
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [*splits, byte_level]},
        "post_processor": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": False,
            "use_regex": True,
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": _bpe(tokens, [m.split(" ", 1) for m in merges], unk=None, byte_fallback=False),
    }


def _sentencepiece(model: GGUFModel, tokens: list[str], types: list[int], unk: str | None) -> dict[str, Any]:
    """SentencePiece BPE as transformers' LlamaTokenizer (legacy) spells it: spaces become "▁", one is
    prepended to each run of text, and unknown characters fall back to `<0xNN>` byte tokens."""
    merges = [m.split(" ", 1) for m in model.field("tokenizer.ggml.merges") or []] or _merges_from_scores(
        tokens, types, model.field("tokenizer.ggml.scores") or [-float(i) for i in range(len(tokens))]
    )
    normalizers: list[dict[str, Any]] = [{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]
    decoders: list[dict[str, Any]] = [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if model.field("tokenizer.ggml.add_space_prefix", True):
        normalizers.insert(0, {"type": "Prepend", "prepend": "▁"})
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": _bpe(tokens, merges, unk=unk, byte_fallback=True),
    }


def _merges_from_scores(tokens: list[str], types: list[int], scores: list[float]) -> list[list[str]]:
    """SentencePiece merges the adjacent pair whose joined piece scores highest; as BPE merges that is
    every split of every normal piece into two known pieces, best joined score first (as transformers'
    `generate_merges`). Control and byte tokens never come out of a merge."""
    known = {t for t, kind in zip(tokens, types, strict=True) if kind in (NORMAL, USER_DEFINED)}
    ranked = sorted(
        (-scores[i], -len(left), left, piece[len(left) :])
        for i, piece in enumerate(tokens)
        if types[i] == NORMAL
        for left in (piece[:cut] for cut in range(1, len(piece)))
        if left in known and piece[len(left) :] in known
    )
    return [[left, right] for _, _, left, right in ranked]


def _bpe(
    tokens: list[str], merges: list[list[str]], *, unk: str | None, byte_fallback: bool
) -> dict[str, Any]:
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": unk,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": byte_fallback,
        "byte_fallback": byte_fallback,
        "ignore_merges": False,
        "vocab": {t: i for i, t in enumerate(tokens)},
        "merges": merges,
    }


def _prepend_bos(bos: str, bos_id: int) -> dict[str, Any]:
    first = {"SpecialToken": {"id": bos, "type_id": 0}}
    return {
        "type": "TemplateProcessing",
        "single": [first, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            first,
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": bos, "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }


def write_tokenizer(model: GGUFModel, dest: Path) -> None:
    for name, content in tokenizer_files(model).items():
        (dest / name).write_text(json.dumps(content, ensure_ascii=False, indent=1), encoding="utf-8")
