"""The tokenizer rebuilt from GGUF metadata: same ids as the original, in `tokenizers` and in og."""

from __future__ import annotations

import json

import pytest

from foundry_jupyter.models.gguf import GGUFError, GGUFModel
from foundry_jupyter.models.gguf.tokenizer import tokenizer_files

from .tinygguf import train_tokenizer

TEXTS = [
    "The capital of France is Paris.",
    "In 2024 there were 365 days",
    "  leading spaces and trailing   ",
    "def add(a, b):\n    return a + b\n",
    "Émile naïvely typed 日本語 🙂",
    "x=3.14159; y=2718",
    "<|im_start|>user\nHi<|im_end|>",
    "",
]


def test_rebuilt_tokenizer_encodes_like_the_original(tiny_gguf, converted):
    from tokenizers import Tokenizer

    original = train_tokenizer()
    rebuilt = Tokenizer.from_file(str(converted(tiny_gguf("Q4_1"), "int4") / "tokenizer.json"))
    for text in TEXTS:
        assert rebuilt.encode(text).ids == original.encode(text).ids, text
        assert rebuilt.decode(rebuilt.encode(text).ids, skip_special_tokens=False) == text


def test_onnxruntime_genai_tokenizer_and_chat_template(tiny_gguf, converted):
    import onnxruntime_genai as og
    from tokenizers import Tokenizer

    folder = converted(tiny_gguf("Q4_1"), "int4")
    rebuilt = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer = og.Tokenizer(og.Model(str(folder)))
    for text in TEXTS:
        assert list(tokenizer.encode(text)) == rebuilt.encode(text).ids, text
    messages = json.dumps([{"role": "user", "content": "What is 12 + 30?"}])
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n"
    ids = list(tokenizer.encode(prompt))
    assert ids[0] == 1 and ids.count(2) == 1  # control tokens stay whole


@pytest.mark.parametrize("pre", ["qwen2", "llama-bpe", "gpt-2"])
def test_other_pre_tokenizers_agree_in_onnxruntime_genai(pre, tmp_path):
    import onnxruntime_genai as og
    from tokenizers import Tokenizer

    from foundry_jupyter.models.gguf import import_gguf

    from .tinygguf import write_tiny_gguf

    folder = import_gguf(write_tiny_gguf(tmp_path / f"{pre}.gguf", "Q8_0", pre=pre), tmp_path / "out")
    rebuilt = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer = og.Tokenizer(og.Model(str(folder)))
    for text in [*TEXTS, "1234567 abc\r\n\n  x", "I'M HERE 's", "hello   \n\n world!!\n"]:
        assert list(tokenizer.encode(text)) == rebuilt.encode(text).ids, text


def test_unknown_pre_tokenizer_is_refused_clearly(tmp_path):
    from .tinygguf import write_tiny_gguf

    path = write_tiny_gguf(tmp_path / "odd.gguf", "Q8_0", pre="some-new-regex")
    with pytest.raises(GGUFError, match="pre-tokenizer 'some-new-regex' is not supported"):
        tokenizer_files(GGUFModel(path))


def test_config_files_name_special_tokens(tiny_gguf, converted):
    folder = converted(tiny_gguf("Q4_1"), "int4")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>" and config["bos_token"] == "<|im_start|>"
    assert config["tokenizer_class"] == "GPT2Tokenizer" and "im_start" in config["chat_template"]
    special = json.loads((folder / "special_tokens_map.json").read_text())
    assert set(special["additional_special_tokens"]) == {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}


class _Fields:
    def __init__(self, **fields):
        self.fields = {f"tokenizer.{k.replace('__', '.')}": v for k, v in fields.items()}

    def field(self, key, default=None):
        return self.fields.get(key, default)


def test_gemma_vocabulary_without_template_gets_gemmas():
    from foundry_jupyter.models.gguf.tokenizer import GEMMA_TEMPLATE, chat_template, end_of_turn_ids

    tokens = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<|im_end|>"]
    gemma = _Fields(ggml__tokens=tokens)
    assert chat_template(gemma) == GEMMA_TEMPLATE
    assert end_of_turn_ids(gemma) == [4]  # not <|im_end|>, which Gemma's template never writes
    assert chat_template(_Fields(ggml__tokens=tokens, chat_template="{{ x }}")) == "{{ x }}"
    assert chat_template(_Fields(ggml__tokens=tokens[:3])) is None
