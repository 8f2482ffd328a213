"""The tiny model dressed as a reasoning model: its folder with a chat template that thinks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from foundry_jupyter.engine.testmodel import CHAT_TEMPLATE

_TURNS = CHAT_TEMPLATE.split("{% if add_generation_prompt %}")[0]

# DeepSeek-R1 distills' way: the prompt itself opens the thinking, the output only closes it.
OPENS_THINKING = _TURNS + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{% endif %}"

# Qwen3's way: the model opens `<think>` itself; `enable_thinking=false` writes an empty block instead.
SWITCHES_THINKING = (
    _TURNS + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\n\n</think>\n\n' }}{% endif %}"
    "{% endif %}"
)


def with_template(model_dir: Path, dest: Path, template: str) -> Path:
    """A copy of the model folder `model_dir` at `dest` whose chat template is `template`."""
    shutil.copytree(model_dir, dest)
    config_file = dest / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["chat_template"] = template
    config_file.write_text(json.dumps(config), encoding="utf-8")
    return dest
