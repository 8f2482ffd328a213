"""Remote engines: OpenAI-compatible servers (vLLM, Ray Serve LLM, SGLang, Ollama, another
foundry-jupyter) whose models are served beside the local ones as `ENGINE/MODEL`.

An engine is configuration only: a name, a base URL, where its API key comes from (an environment
variable named in `api_key_env`, or `api_key` set in Jupyter config, never written to a file) and limits.
Engines come from `c.FoundryApp.remote_engines` and from `engines.json` beside the user's registered
models (what `jupyter foundry engine add` and `POST foundry/openai/register` write). An engine's model
list is its `GET /v1/models`, or the `models` it was configured with; `EngineListing` is one look at it,
with the engine's health and latency.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from ..errors import FoundryError, InvalidRequest, error_from_body

if TYPE_CHECKING:
    import httpx


ENGINES_FILE = "engines.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # as local aliases (registry.ALIAS_PATTERN)
DEVICE = "remote"  # the device column of an engine's models


def _choices(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class EngineConfig(BaseModel):
    """One engine. Field names are snake_case; camelCase and Foundry's register body are accepted too."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(validation_alias=_choices("name", "TypeName", "typeName"))
    base_url: str = Field(validation_alias=_choices("base_url", "baseUrl", "BaseUri", "baseUri"))
    api_key_env: str | None = Field(None, validation_alias=_choices("api_key_env", "apiKeyEnv"))
    # A key given in Jupyter config (as a `SecretStr`, see `plain_config_keys`) or in a register body:
    # held in memory, never saved nor shown; its repr is masked wherever it is printed.
    api_key: SecretStr | None = Field(
        None, repr=False, validation_alias=_choices("api_key", "apiKey", "ApiKey")
    )
    models: tuple[str, ...] = Field((), validation_alias=_choices("models", "ModelName", "modelName"))
    # Short names for the engine's models (`llama` -> `meta-llama/Llama-3.1-8B-Instruct`), used like
    # local aliases; one a local model already answers to is refused.
    aliases: dict[str, str] = Field(default_factory=dict, validation_alias=_choices("aliases", "Aliases"))
    max_in_flight: int = Field(16, ge=1, validation_alias=_choices("max_in_flight", "maxInFlight"))
    connect_timeout: float = Field(5.0, gt=0, validation_alias=_choices("connect_timeout", "connectTimeout"))
    first_byte_timeout: float = Field(
        120.0, gt=0, validation_alias=_choices("first_byte_timeout", "firstByteTimeout")
    )
    idle_timeout: float = Field(60.0, gt=0, validation_alias=_choices("idle_timeout", "idleTimeout"))
    list_timeout: float = Field(3.0, gt=0, validation_alias=_choices("list_timeout", "listTimeout"))
    refresh_s: float = Field(60.0, ge=0, validation_alias=_choices("refresh_s", "refreshSeconds"))
    retries: int = Field(1, ge=0, le=5)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("an engine name is letters, digits, '.', '_' and '-' (at most 64)")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("the base URL must be http:// or https:// with a host, e.g. http://gpu1:8000/v1")
        return value.strip().rstrip("/")

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(m.strip() for m in value.split(",") if m.strip())
        return tuple(value) if isinstance(value, list) else value  # JSON's arrays, also when strict

    @field_validator("aliases", mode="before")
    @classmethod
    def _aliases_in(cls, value: Any) -> Any:
        """`{alias: model}`, or `alias=model` pairs (a list, or one comma-separated string)."""
        if isinstance(value, str):
            value = [pair for pair in value.split(",") if pair.strip()]
        if isinstance(value, (list, tuple)):
            pairs = {}
            for pair in value:
                alias, sep, model = str(pair).partition("=")
                if not sep:
                    raise ValueError(f"{pair!r} is not ALIAS=MODEL")
                pairs[alias.strip()] = model.strip()
            return pairs
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: dict[str, str]) -> dict[str, str]:
        for alias, model in value.items():
            if not ALIAS_PATTERN.match(alias):
                raise ValueError(f"bad alias {alias!r}: use letters, digits, '.', '_' and '-' (no '/')")
            if not model:
                raise ValueError(f"the alias {alias!r} names no model")
        lowered = [a.lower() for a in value]
        if len(set(lowered)) != len(lowered):
            raise ValueError("two aliases differ only in case")
        return value

    def alias_of(self, model: str) -> str | None:
        """The alias this engine gives `model`, if any."""
        return next((a for a, m in self.aliases.items() if m == model), None)

    def display_name(self, model: str) -> str:
        """What a model of this engine answers to first: its alias, else `ENGINE/MODEL`."""
        return self.alias_of(model) or f"{self.name}/{model}"

    @property
    def api_base(self) -> str:
        """The OpenAI root (`.../v1`): the base URL when it ends in `/v1`, else the base URL + `/v1`."""
        return self.base_url if self.base_url.endswith("/v1") else self.base_url + "/v1"

    def key(self, env: Mapping[str, str] | None = None) -> str | None:
        """The API key: the environment variable named in `api_key_env` wins over a configured key."""
        env = os.environ if env is None else env
        if self.api_key_env and env.get(self.api_key_env):
            return env[self.api_key_env]
        if self.api_key is None:
            return None
        return self.api_key.get_secret_value() or None

    def headers(self) -> dict[str, str]:
        key = self.key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def public(self) -> dict[str, Any]:
        """What may be shown: everything but the key (only whether one is set, and from where)."""
        return {
            "name": self.name,
            "baseUrl": public_url(self.base_url),
            "apiKeyEnv": self.api_key_env,
            "hasKey": self.key() is not None,
            "models": list(self.models),
            "aliases": dict(self.aliases),
            "maxInFlight": self.max_in_flight,
        }

    def to_file(self) -> dict[str, Any]:
        """What `engines.json` holds: never the key itself."""
        data = self.model_dump(exclude={"api_key"}, exclude_defaults=True)
        data["name"], data["base_url"] = self.name, self.base_url
        if self.models:
            data["models"] = list(self.models)
        return data


def parse_engine(data: Any, *, source: str = "engine", strict: bool = False) -> EngineConfig:
    """An `EngineConfig` from a dict (config, file or request body); InvalidRequest says what is wrong.
    `strict` (request bodies): JSON types as they are, no coercion, as the other routes validate."""
    if isinstance(data, EngineConfig):
        return data
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"{source}: an engine is an object with name and base_url, not {data!r}")
    try:
        return EngineConfig.model_validate(dict(data), strict=strict)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidRequest(f"{source}: {problems}") from None


KEY_FIELDS = ("api_key", "apiKey", "ApiKey")


def plain_config_keys(item: Any) -> bool:
    """Whether an engine from Jupyter config holds its key as plain text. Jupyter logs the whole config
    it loads at DEBUG (traitlets' `Application._config_changed`, "Config changed: ...") before any
    extension is imported, and prints it for `--show-config`: only a value whose repr is masked, such as
    pydantic's `SecretStr`, stays out of those."""
    return isinstance(item, Mapping) and any(isinstance(item.get(k), str) and item.get(k) for k in KEY_FIELDS)


def public_url(url: str) -> str:
    """`url` without user:password, which some people put into base URLs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def split_name(name: str, engines: Iterable[str]) -> tuple[str, str] | None:
    """(engine, model) when `name` is `ENGINE/MODEL` for a known engine (the model may hold `/`)."""
    engine, sep, model = name.strip().partition("/")
    if not sep or not model:
        return None
    known = {e.lower(): e for e in engines}
    found = known.get(engine.lower())
    return None if found is None else (found, model)


class RemoteModel(NamedTuple):
    """A name that means an engine's model: the engine, the model's id there, and the alias used (if any)."""

    engine: EngineConfig
    model: str
    alias: str | None = None


def find_model(name: str | None, engines: Sequence[EngineConfig]) -> RemoteModel | None:
    """The engine model `name` means: `ENGINE/MODEL` for a known engine, or an engine's alias."""
    if not isinstance(name, str) or not engines:
        return None
    found = split_name(name, [e.name for e in engines])
    if found is not None:
        return RemoteModel(next(e for e in engines if e.name == found[0]), found[1])
    wanted = name.strip().lower()
    for engine in engines:
        for alias, model in engine.aliases.items():
            if alias.lower() == wanted:
                return RemoteModel(engine, model, alias)
    return None


def alias_conflict(alias: str, engine: str, where: str) -> InvalidRequest:
    """The error for an engine alias that another model already answers to."""
    return InvalidRequest(
        f"The alias {alias!r} of engine '{engine}' is taken by {where}: pick another alias, or use the "
        "full name (ENGINE/MODEL, or the local model's id).",
        param="aliases",
        code="alias_conflict",
        status=409,
    )


def check_new_aliases(
    engine: EngineConfig, others: Iterable[EngineConfig], is_local: Callable[[str], bool]
) -> None:
    """Refuse `engine` when one of its aliases is another engine's, or one a local model answers to."""
    for alias in engine.aliases:
        for other in others:
            if other.name.lower() != engine.name.lower() and alias.lower() in {
                a.lower() for a in other.aliases
            }:
                raise alias_conflict(alias, engine.name, f"engine '{other.name}'")
        if is_local(alias):
            raise alias_conflict(alias, engine.name, "a local model")


def engine_aliases(settings_engines: Iterable[Any], file: EngineFile) -> dict[str, str]:
    """`{alias (lower case): engine name}` over configured and saved engines (bad entries skipped)."""
    found: dict[str, str] = {}
    engines: list[EngineConfig] = []
    for item in settings_engines:
        with contextlib.suppress(FoundryError):
            engines.append(parse_engine(item))
    with contextlib.suppress(FoundryError):
        engines.extend(file.load())
    for engine in engines:
        found.update({a.lower(): engine.name for a in engine.aliases})
    return found


# ---- the engines file -----------------------------------------------------------------------
class EngineFile:
    """`engines.json`: a list of engines, written by the CLI and the register route."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()

    def mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def load(self) -> list[EngineConfig]:
        if not self.path.is_file():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "[]")
        except (OSError, ValueError) as exc:
            raise FoundryError(f"{self.path} is not a readable JSON file: {exc}") from None
        items = data.get("engines", []) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise FoundryError(f"{self.path}: expected a list of engines")
        return [parse_engine(item, source=str(self.path)) for item in items]

    def save(self, engines: Sequence[EngineConfig]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_suffix(".json.tmp")
        staging.write_text(json.dumps({"engines": [e.to_file() for e in engines]}, indent=2) + "\n")
        os.replace(staging, self.path)

    def add(self, engine: EngineConfig) -> EngineConfig:
        """Add `engine`, replacing one of the same name."""
        others = [e for e in self.load() if e.name.lower() != engine.name.lower()]
        self.save([*others, engine])
        return engine

    def remove(self, name: str) -> EngineConfig:
        engines = self.load()
        kept = [e for e in engines if e.name.lower() != name.lower()]
        if len(kept) == len(engines):
            raise InvalidRequest(f"No engine named {name!r} in {self.path}", code="engine_not_found")
        self.save(kept)
        return next(e for e in engines if e.name.lower() == name.lower())


def merge_engines(configured: Iterable[EngineConfig], saved: Iterable[EngineConfig]) -> list[EngineConfig]:
    """Configured engines first; a saved engine of the same name gives way to the configured one."""
    result: dict[str, EngineConfig] = {}
    for engine in [*saved, *configured]:
        result[engine.name.lower()] = engine
    return sorted(result.values(), key=lambda e: e.name.lower())


# ---- one look at an engine --------------------------------------------------------------------
@dataclass
class EngineListing:
    """The models an engine offers and how it answered: `health` is ok, unauthorized, error, down or
    unknown (never asked yet); `latency_ms` is how long its `GET /v1/models` took."""

    engine: str
    models: list[dict[str, Any]] = field(default_factory=list)  # the engine's model objects ({"id", ...})
    health: str = "unknown"
    latency_ms: float | None = None
    error: str | None = None
    checked_at: float = 0.0

    def fresh(self, max_age_s: float, now: float | None = None) -> bool:
        return self.checked_at > 0 and ((now or time.monotonic()) - self.checked_at) < max_age_s

    def model_ids(self) -> list[str]:
        return [str(m["id"]) for m in self.models if isinstance(m, dict) and m.get("id")]


def listing_from_answer(
    engine: EngineConfig, status: int | None, body: Any, latency_ms: float, error: str | None = None
) -> EngineListing:
    """An `EngineListing` from the engine's answer to `GET /v1/models` (status None: no answer)."""
    configured = [{"id": m} for m in engine.models]
    listing = EngineListing(engine.name, configured, latency_ms=round(latency_ms, 1))
    listing.checked_at = time.monotonic()
    if status is None:
        listing.health, listing.error, listing.latency_ms = "down", error, None
    elif status in (401, 403):
        listing.health, listing.error = "unauthorized", f"the engine refused the API key ({status})"
    elif status >= 400:
        listing.health, listing.error = "error", f"GET /v1/models answered {status}"
    else:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            listing.health, listing.error = "error", "GET /v1/models did not answer an OpenAI model list"
        else:
            listing.health = "ok"
            found = [m for m in data if isinstance(m, dict) and m.get("id")]
            if not engine.models:
                listing.models = found
            else:  # configured models only, with what the engine says about them
                by_id = {str(m["id"]): m for m in found}
                listing.models = [by_id.get(m, {"id": m}) for m in engine.models]
    return listing


def fetch_listing(engine: EngineConfig) -> EngineListing:
    """`GET {api_base}/models` now, in this thread (the kernel and the CLI; the server has its own)."""
    import httpx

    started = time.perf_counter()
    try:
        with httpx.Client(timeout=engine.list_timeout, headers=engine.headers()) as client:
            answer = client.get(f"{engine.api_base}/models")
    except httpx.HTTPError as exc:
        return listing_from_answer(engine, None, None, 0.0, error=describe_failure(engine, exc))
    return listing_from_response(engine, answer, started)


def fetch_listings(engines: Sequence[EngineConfig]) -> list[EngineListing]:
    """`fetch_listing` of every engine at once, in threads (the kernel and the CLI)."""
    if not engines:
        return []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(engines))) as pool:
        return list(pool.map(fetch_listing, engines))


def listing_from_response(engine: EngineConfig, answer: httpx.Response, started: float) -> EngineListing:
    """An engine's listing from its `GET /models` answer, timed from `started` (perf_counter)."""
    latency = (time.perf_counter() - started) * 1000
    try:
        body = answer.json()
    except ValueError:
        body = None
    return listing_from_answer(engine, answer.status_code, body, latency)


def describe_failure(engine: EngineConfig, exc: BaseException) -> str:
    """One line naming the engine and what went wrong, without the key."""
    detail = f"{type(exc).__name__}: {exc or 'no detail'}"
    return f"engine '{engine.name}' at {public_url(engine.api_base)} did not answer ({detail})"


def engine_error(engine: EngineConfig, err: Exception) -> FoundryError:
    """An openai client error as a FoundryError naming the engine (never its key)."""
    import openai

    if isinstance(err, FoundryError):
        return err
    if isinstance(err, openai.APIConnectionError):
        return FoundryError(
            f"engine '{engine.name}' at {public_url(engine.api_base)} does not answer ({type(err).__name__})",
            status=503,
            code="engine_unavailable",
        )
    if isinstance(err, openai.APIStatusError):
        found = error_from_body(err.status_code, err.body, err.message)
        found.message = f"engine '{engine.name}': {found.message}"
        return found
    return FoundryError(f"engine '{engine.name}' failed: {type(err).__name__}")
