"""Rebuild a Hugging Face `tokenizer.json` (and its config) from a GGUF's `tokenizer.ggml.*` metadata.

Only byte-level BPE vocabularies (`tokenizer.ggml.model == "gpt2"`) are covered. The pre-tokenizer is
written in the one form both `tokenizers` and onnxruntime-genai honour: a Sequence of `Split` regexes
that og recognises, then `ByteLevel(use_regex=False)`. og ignores a `Digits` pre-tokenizer and rejects
unknown `\\p{...}` regexes at load time, so digit splitting is itself a `Split`.
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

CONTROL, USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values that are added tokens


def tokenizer_files(model: GGUFModel) -> dict[str, Any]:
    """`tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` contents."""
    kind = model.field("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFError(
            f"{model.path.name}: tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2')"
        )
    pre = model.field("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise GGUFError(
            f"{model.path.name}: pre-tokenizer {pre!r} is not supported "
            f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})"
        )
    tokens: list[str] = model.field("tokenizer.ggml.tokens")
    merges: list[str] = model.field("tokenizer.ggml.merges") or []
    types: list[int] = model.field("tokenizer.ggml.token_type") or [1] * len(tokens)

    def token(key: str) -> str | None:
        index = model.field(f"tokenizer.ggml.{key}_token_id")
        return tokens[index] if index is not None and 0 <= index < len(tokens) else None

    bos, eos, unk, pad = token("bos"), token("eos"), token("unknown"), token("padding")
    add_bos = bool(model.field("tokenizer.ggml.add_bos_token", False))
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
    splits = [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}
        for regex in PRE_TOKENIZERS[pre]
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    post: dict[str, Any] = {
        "type": "ByteLevel",
        "add_prefix_space": True,
        "trim_offsets": False,
        "use_regex": True,
    }
    if add_bos and bos is not None:
        bos_id = tokens.index(bos)
        post = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
        }
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [*splits, byte_level]},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": [m.split(" ", 1) for m in merges],
        },
    }
    chat_template = model.field("tokenizer.chat_template")
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
        # og reports "Empty chat template" for a config without a tokenizer class.
        "tokenizer_class": "GPT2Tokenizer",
    }
    if chat_template:
        config["chat_template"] = chat_template
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


def write_tokenizer(model: GGUFModel, dest: Path) -> None:
    for name, content in tokenizer_files(model).items():
        (dest / name).write_text(json.dumps(content, ensure_ascii=False, indent=1), encoding="utf-8")
