"""`model compile`: onnxruntime-genai's builder over a tiny llama checkpoint made here (needs torch)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from foundry_jupyter.cli import main
from foundry_jupyter.config import defaults
from foundry_jupyter.models import compile as compile_module
from foundry_jupyter.models.manager import ModelManager

from .ortrun import Decoder
from .tinygguf import CHATML, train_tokenizer

HAS_TORCH = all(importlib.util.find_spec(n) is not None for n in ("torch", "transformers"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache" / "models"
    monkeypatch.setenv("FOUNDRY_JUPYTER_CACHE", str(root))
    return root


def test_missing_torch_is_one_clear_line(tmp_path, cache, monkeypatch, capsys):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    monkeypatch.setattr(compile_module, "missing_requirements", lambda: ["torch", "transformers"])
    assert main(["model", "compile", str(tmp_path / "ckpt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "Error: model compile needs torch and transformers, which are not installed: "
        "pip install 'foundry-jupyter[compile]'"
    )


def test_not_a_checkpoint_and_fp16_on_cpu(tmp_path, cache, capsys):
    assert main(["model", "compile", str(tmp_path)]) == 1
    assert "has no config.json" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    assert main(["model", "compile", str(tmp_path), "--precision", "fp16"]) == 1
    assert "fp16 needs --ep cuda" in capsys.readouterr().err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 2-layer llama saved with transformers, with a tokenizer trained here and a ChatML template."""
    if not HAS_TORCH:
        pytest.skip("torch and transformers are not installed (pip install 'foundry-jupyter[compile]')")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("hf-checkpoint")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    ids = [5, 17, 99, 3, 250, 42]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy()
    return folder, ids, logits


def test_compile_fp32_matches_transformers(checkpoint, cache, capsys):
    folder, ids, expected = checkpoint
    assert (
        main(["model", "compile", str(folder), "--alias", "tiny-hf", "--precision", "fp32", "-o", "json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["id"] == "tiny-hf-fp32-generic-cpu:1"
    path = ModelManager(defaults()).local_path("tiny-hf")
    np.testing.assert_allclose(Decoder(path).logits(ids), expected, rtol=1e-3, atol=1e-3)


def test_compile_int4_runs_in_onnxruntime_genai(checkpoint, cache):
    import onnxruntime_genai as og

    model = compile_module.compile_model(checkpoint[0], alias="tiny-hf-int4")
    og_model = og.Model(str(model.path))
    params = og.GeneratorParams(og_model)
    params.set_search_options(max_length=12, min_length=12)
    generator = og.Generator(og_model, params)
    generator.append_tokens([5, 17, 99, 3])
    while not generator.is_done():
        generator.generate_next_token()
    assert len(generator.get_sequence(0)) == 12
