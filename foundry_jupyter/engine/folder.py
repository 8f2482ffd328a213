"""A model folder on disk: what its genai_config.json and tokenizer files say, and opening it with og."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundry_jupyter.engine.hardware import (
    cpu_threads,
    normalize_provider,
    provider_info,
    provider_status,
    usable_providers,
)
from foundry_jupyter.errors import FoundryError, InvalidRequest, ModelNotFound, ProviderUnavailable


@dataclass(frozen=True)
class FolderSettings:
    """What generation needs to know from a folder's files."""

    context_length: int
    do_sample: bool  # the folder's sampling default, for requests that leave temperature out
    temperature: float | None
    eos: frozenset[int]
    has_template: bool
    chat_template: str | None  # the template's text, where the folder has one
    text_bos: int | None  # the BOS a plain text prompt starts with, when the tokenizer wants one

    @classmethod
    def read(cls, path: Path, config: dict[str, Any]) -> FolderSettings:
        model_cfg = config.get("model", {})
        search = config.get("search", {})
        limits = [v for v in (model_cfg.get("context_length"), search.get("max_length")) if v]
        eos = model_cfg.get("eos_token_id", [])
        tokenizer_config = _tokenizer_config(path)
        # og's tokenizer never adds BOS itself: chat templates write it, but a plain text prompt needs it
        # added here when the tokenizer asks for one (Llama 2, Mistral; not SmolLM2 or GPT-2 vocabularies).
        bos = model_cfg.get("bos_token_id")
        wants_bos = tokenizer_config.get("add_bos_token")
        return cls(
            context_length=int(min(limits)) if limits else 4096,
            do_sample=bool(search.get("do_sample", False)),
            temperature=search.get("temperature"),
            eos=frozenset(eos if isinstance(eos, list) else [eos]),
            has_template=(path / "chat_template.jinja").is_file()
            or bool(tokenizer_config.get("chat_template")),
            chat_template=chat_template(path),
            text_bos=bos if isinstance(bos, int) and wants_bos else None,
        )


@dataclass
class OpenedFolder:
    config: dict[str, Any]  # genai_config.json
    og_model: Any
    tokenizer: Any
    provider: str  # short name
    cpu_threads: int | None


def read_config(path: Path) -> dict[str, Any]:
    config_file = path / "genai_config.json"
    if not config_file.is_file():
        raise ModelNotFound(f"No model at {path}: genai_config.json is missing.", param="model")
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"Cannot read {config_file}: {exc}", param="model") from exc


def open_folder(path: Path, ep: str | None) -> OpenedFolder:
    """Load the og model and tokenizer of `path` on `ep` (None: the provider the folder names)."""
    config = read_config(path)
    short = normalize_provider(ep) if ep else declared_provider(config)
    status = provider_status(short)
    if not status.usable:
        usable = ", ".join(usable_providers())
        raise ProviderUnavailable(
            f"Execution provider '{short}' is not usable on this machine: {status.note}. "
            f"Usable here: {usable}.",
            param="ep",
        )

    import onnxruntime_genai as og

    try:
        og_config = og.Config(str(path))
        threads = set_engine_threads(og_config, config, short)
        if ep is not None:
            og_config.clear_providers()
            og_name = provider_info(short).og_name
            if og_name:
                og_config.append_provider(og_name)
        og_model = og.Model(og_config)
        tokenizer = og.Tokenizer(og_model)
    except Exception as exc:
        raise FoundryError(f"Could not load the model at {path} on {short}: {exc}", param="model") from exc
    return OpenedFolder(config, og_model, tokenizer, short, threads)


def engine_threads(config: dict[str, Any], provider: str) -> int | None:
    """Operator threads a model runs with: the folder's own `intra_op_num_threads`, else on CPU every
    physical core (`hardware.cpu_threads`), else onnxruntime's default (None)."""
    own = _session_options(config).get("intra_op_num_threads")
    if own or provider != "cpu":
        return own
    return cpu_threads()


def set_engine_threads(og_config: Any, config: dict[str, Any], provider: str) -> int | None:
    """Give `og_config` (of the folder whose genai_config.json is `config`) the engine's operator
    threads; returns them."""
    threads = engine_threads(config, provider)
    if threads != _session_options(config).get("intra_op_num_threads"):
        overlay = {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
        og_config.overlay(json.dumps(overlay))
    return threads


def declared_provider(config: dict[str, Any]) -> str:
    """The provider a genai_config.json asks for (its first provider_options entry), else CPU."""
    options = _session_options(config).get("provider_options", [])
    for entry in options if isinstance(options, list) else []:
        if isinstance(entry, dict) and entry:
            try:
                return normalize_provider(next(iter(entry)))
            except InvalidRequest:
                continue
    return "cpu"


def _session_options(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("model", {}).get("decoder", {}).get("session_options", {}) or {}


def chat_template(path: Path) -> str | None:
    """The chat template of a model folder: tokenizer_config.json's, else chat_template.jinja."""
    template = _tokenizer_config(path).get("chat_template")
    if isinstance(template, list):  # Hugging Face's named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if isinstance(template, str) and template:
        return template
    try:
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    except OSError:
        return None


def _tokenizer_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
