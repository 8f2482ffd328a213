"""`genai_config.json` for an imported decoder: the names must match the graph's inputs and outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .reader import GGUFModel
from .tokenizer import end_of_turn_ids


def genai_config(model: GGUFModel) -> dict[str, Any]:
    hp = model.hparams
    eos = model.field("tokenizer.ggml.eos_token_id")
    eot = model.field("tokenizer.ggml.eot_token_id")
    # Without eos_token_id generation never stops; an end-of-turn token, when distinct, ends it too, as
    # does any the chat template writes (Gemma's <end_of_turn>, which its files do not name).
    stops = list(dict.fromkeys(t for t in (eos, eot, *end_of_turn_ids(model)) if t is not None))
    eos_ids: int | list[int] | None = stops[0] if len(stops) == 1 else (stops or None)
    bos = model.field("tokenizer.ggml.bos_token_id")
    pad = model.field("tokenizer.ggml.padding_token_id", eos)
    return {
        "model": {
            "bos_token_id": bos if bos is not None else eos,
            "context_length": hp.context_length,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "model.onnx",
                "head_size": hp.head_dim,
                "hidden_size": hp.hidden_size,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": hp.num_heads,
                "num_hidden_layers": hp.num_layers,
                "num_key_value_heads": hp.num_kv_heads,
            },
            "eos_token_id": eos_ids,
            "pad_token_id": pad if pad is not None else eos,
            "type": hp.arch.genai_type,
            "vocab_size": hp.vocab_size,
        },
        "search": {
            "diversity_penalty": 0.0,
            "do_sample": False,
            "early_stopping": True,
            "length_penalty": 1.0,
            "max_length": hp.context_length,
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            # GroupQueryAttention updates a KV buffer of max_length in place: no copy per token.
            "past_present_share_buffer": True,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    }


def write_genai_config(model: GGUFModel, dest: Path) -> None:
    (dest / "genai_config.json").write_text(json.dumps(genai_config(model), indent=4), encoding="utf-8")
