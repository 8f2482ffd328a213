"""SentencePiece GGUF vocabularies (Llama 2, Mistral): the rebuilt tokenizer gives SentencePiece's own ids
and text, in `tokenizers` and in og, and an imported model chats through og."""

from __future__ import annotations

import json

import pytest

from foundry_jupyter.models.gguf import GGUFError, GGUFModel
from foundry_jupyter.models.gguf.tokenizer import tokenizer_files

from . import spmvocab
from .tinygguf import write_tiny_gguf

pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def spm_folder(tmp_path_factory):
    from foundry_jupyter.models.gguf import import_gguf

    folder = tmp_path_factory.mktemp("spm")
    return import_gguf(write_tiny_gguf(folder / "spm.gguf", "Q4_0", vocab="spm"), folder / "out")


def test_strings_cover_the_hard_cases():
    sp, texts = spmvocab.processor(), spmvocab.strings()
    assert len(texts) > 300
    assert any("  " in t for t in texts) and any("\n" in t for t in texts) and "" in texts
    assert sum(any(sp.is_byte(i) for i in sp.encode(t)) for t in texts) > 50  # byte fallback


def test_tokenizers_encodes_and_decodes_like_sentencepiece(spm_folder):
    from tokenizers import Tokenizer

    sp = spmvocab.processor()
    rebuilt = Tokenizer.from_file(str(spm_folder / "tokenizer.json"))
    for text in spmvocab.strings():
        ids = sp.encode(text, add_bos=True)
        assert rebuilt.encode(text).ids == ids, text
        assert rebuilt.decode(ids, skip_special_tokens=True) == sp.decode(ids), text


def test_onnxruntime_genai_encodes_and_decodes_like_sentencepiece(spm_folder):
    import onnxruntime_genai as og

    sp = spmvocab.processor()
    tokenizer = og.Tokenizer(og.Model(str(spm_folder)))
    for text in spmvocab.strings():
        # og's encode never adds BOS (chat templates write it); the rest is SentencePiece's.
        assert list(tokenizer.encode(text)) == sp.encode(text), text
        if not text:
            continue  # og decodes a lone BOS as "\ufffd"
        ids = sp.encode(text, add_bos=True)
        assert tokenizer.decode(ids) == sp.decode(ids), text
        stream = tokenizer.create_stream()
        assert "".join(stream.decode(i) for i in ids) == sp.decode(ids), text


def test_config_and_merges(spm_folder):
    config = json.loads((spm_folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "GemmaTokenizer" and config["add_bos_token"] is True
    assert (config["bos_token"], config["eos_token"], config["unk_token"]) == ("<s>", "</s>", "<unk>")
    model = json.loads((spm_folder / "tokenizer.json").read_text())["model"]
    assert model["byte_fallback"] and model["unk_token"] == "<unk>"
    assert ["▁", "▁"] in model["merges"] and not any("<0x" in a + b for a, b in model["merges"])


def test_imported_model_chats_through_onnxruntime_genai(spm_folder):
    import onnxruntime_genai as og
    from tokenizers import Tokenizer

    sp = spmvocab.processor()
    model = og.Model(str(spm_folder))
    tokenizer = og.Tokenizer(model)
    messages = [
        {"role": "user", "content": "What is 12 + 30?"},
        {"role": "assistant", "content": "42."},
        {"role": "user", "content": "And  in words?"},
    ]
    prompt = tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
    assert prompt == "<s>[INST] What is 12 + 30? [/INST]42.</s> [INST] And  in words? [/INST]"
    ids = [int(i) for i in tokenizer.encode(prompt)]
    # Control tokens stay whole and the text after each gets SentencePiece's prefix space, as in llama.cpp.
    rebuilt = Tokenizer.from_file(str(spm_folder / "tokenizer.json"))
    assert ids == rebuilt.encode(prompt, add_special_tokens=False).ids
    assert ids[0] == 1 and ids.count(2) == 1
    assert ids[: ids.index(2)] == sp.encode("[INST] What is 12 + 30? [/INST]42.", add_bos=True)

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 8, min_length=len(ids) + 8)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    stream, text = tokenizer.create_stream(), ""
    while not generator.is_done():
        generator.generate_next_token()
        text += stream.decode(int(generator.get_next_tokens()[0]))
    sequence = [int(i) for i in generator.get_sequence(0)]
    new = sequence[len(ids) :]
    assert sequence[: len(ids)] == ids and len(new) == 8 and all(0 <= i < sp.get_piece_size() for i in new)
    # Random weights may emit byte tokens that are not UTF-8; og then drops text after them.
    if "\ufffd" not in sp.decode(new):
        assert text.strip() == sp.decode(new).strip()


def test_a_text_prompt_starts_with_bos_as_the_tokenizer_asks(spm_folder, tiny_model_dir):
    """og's encode adds no BOS; the engine adds it to plain text prompts where add_bos_token says so
    (chat templates write their own), and leaves vocabularies that do not ask for one alone."""
    from foundry_jupyter.engine.model import ChatModel
    from foundry_jupyter.engine.types import GenerationParams

    greedy = GenerationParams(max_tokens=2, temperature=0)
    with ChatModel.load(spm_folder) as model:
        assert model.encode("Hello there")[0] != 1  # og alone: no BOS
        done = model.complete_text("Hello there", greedy)
        assert done.usage.prompt_tokens == len(model.encode("Hello there")) + 1
        chat = model.encode_chat([{"role": "user", "content": "Hi"}])
        assert chat[0] == 1 and chat[1] != 1  # the template's own BOS, not a second one
    with ChatModel.load(tiny_model_dir) as tiny:  # add_bos_token false
        done = tiny.complete_text("Hello there", greedy)
        assert done.usage.prompt_tokens == len(tiny.encode("Hello there"))


def test_unknown_tokenizer_model_is_refused_clearly(tmp_path):
    import gguf

    path = tmp_path / "wordpiece.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_tokenizer_model("bert")
    writer.add_token_list(["[UNK]", "a"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError, match="tokenizer model 'bert' is not supported"):
        tokenizer_files(GGUFModel(path))
