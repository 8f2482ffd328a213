"""The built-in tiny model: byte-identical builds, and a real model that onnxruntime-genai runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from foundry_jupyter.engine.testmodel import IM_END_ID, IM_START_ID, TINY_ALIAS, TINY_ID, build_tiny_model

EXPECTED_FILES = {
    "genai_config.json",
    "model.onnx",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_constants() -> None:
    assert TINY_ALIAS == "tiny"
    assert TINY_ID == "tiny-generic-cpu:1"


def test_build_is_byte_identical_in_process_and_in_a_fresh_interpreter(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = _contents(tiny_model_dir)
    assert set(first) == EXPECTED_FILES
    assert _contents(build_tiny_model(tmp_path / "again")) == first
    # A fresh interpreter has fresh hash seeds: the build must not depend on them.
    other = tmp_path / "other-process"
    code = "import sys, pathlib; from foundry_jupyter.engine.testmodel import build_tiny_model; "
    code += "build_tiny_model(pathlib.Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, str(other)], check=True, timeout=120)
    assert _contents(other) == first


def test_config_declares_what_the_engine_relies_on(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "genai_config.json").read_text())
    decoder = config["model"]["decoder"]
    assert config["model"]["type"] == "llama"
    assert decoder["session_options"]["intra_op_num_threads"] == 1
    assert config["search"]["past_present_share_buffer"] is False
    assert decoder["inputs"]["past_key_names"] == "past_key_values.%d.key"
    assert decoder["outputs"]["present_value_names"] == "present.%d.value"
    tok_config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok_config["chat_template"]


def test_loads_in_onnxruntime_genai_and_generates(tiny_model_dir: Path) -> None:
    import onnxruntime_genai as og

    model = og.Model(str(tiny_model_dir))
    tokenizer = og.Tokenizer(model)
    messages = [{"role": "user", "content": "hello café 東京"}]
    prompt = tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nhello café 東京<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer.encode(prompt)
    # Chat markers are single special tokens (decode skips them), the text round-trips.
    assert int(ids[0]) == IM_START_ID
    assert tokenizer.decode(ids) == "user\nhello café 東京\nassistant\n"

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 40, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    stream = tokenizer.create_stream()
    tokens: list[int] = []
    streamed = ""
    while not generator.is_done():
        generator.generate_next_token()
        token = int(generator.get_next_tokens()[0])
        tokens.append(token)
        streamed += stream.decode(token)
    assert 0 < len(tokens) <= 40
    assert tokens[-1] == IM_END_ID or len(tokens) == 40
    decoded = tokenizer.decode(tokens)
    # Invalid-UTF-8 byte tokens are biased away, so streaming loses nothing.
    assert streamed == decoded
    assert "\ufffd" not in decoded
    assert decoded.strip()


def test_a_longer_context_keeps_the_default_answers(tmp_path, tiny_model_dir) -> None:
    from foundry_jupyter.engine.model import ChatModel
    from foundry_jupyter.engine.testmodel import build_tiny_model
    from foundry_jupyter.engine.types import GenerationParams

    long_dir = build_tiny_model(tmp_path / "long", context_length=4096)
    messages = [{"role": "user", "content": "Hello there"}]
    params = GenerationParams(max_tokens=40, temperature=0)
    default, long = ChatModel.load(tiny_model_dir), ChatModel.load(long_dir)
    try:
        assert long.context_length == 4096 and default.context_length == 1024
        assert long.complete_chat(messages, params).text == default.complete_chat(messages, params).text
    finally:
        default.close()
        long.close()
