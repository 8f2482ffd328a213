"""Defaults shared by the server extension, the kernel side and the CLI.

One function, `defaults()`, computes them; traitlets config on `FoundryApp` / `FoundryMagics` and the
`FOUNDRY_JUPYTER_*` environment variables override them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Environment variables read here, and those the server exports into the kernels it starts.
ENV_CACHE = "FOUNDRY_JUPYTER_CACHE"
ENV_CATALOGS = "FOUNDRY_JUPYTER_CATALOGS"  # os.pathsep-separated JSON catalog files
ENV_TTL = "FOUNDRY_JUPYTER_TTL"
ENV_EP = "FOUNDRY_JUPYTER_EP"
ENV_MAX_LOADED = "FOUNDRY_JUPYTER_MAX_LOADED"
ENV_SERVICE_URL = "FOUNDRY_JUPYTER_URL"  # e.g. http://127.0.0.1:8888/foundry/ (exported to kernels)
ENV_SERVICE_TOKEN = "FOUNDRY_JUPYTER_TOKEN"  # the credential for that URL (exported to kernels)
ENV_RUNNER_TRANSPORT = "FOUNDRY_JUPYTER_RUNNER_TRANSPORT"  # auto | unix | tcp (FoundryApp.runner_transport)

DEFAULT_TTL_S = 600
DEFAULT_MAX_TOKENS = 2048


def default_home() -> Path:
    # As Foundry Local keeps `~/.foundry` (`%USERPROFILE%\.foundry` on Windows): a folder in the home
    # directory on every platform, joined by pathlib. Runner sockets and scratch files go to the
    # system's temporary folder (`tempfile`), the service's runtime files to Jupyter's runtime folder.
    return Path.home() / ".foundry-jupyter"


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    catalog_files: tuple[Path, ...] = ()
    ttl_s: int = DEFAULT_TTL_S
    execution_provider: str | None = None  # None: the best one the model and machine allow
    max_loaded_models: int = 4
    registry_file: Path = field(default_factory=lambda: default_home() / "registered.json")
    # Remote OpenAI-compatible engines: configured ones (dicts, see models.engines) and the saved ones.
    remote_engines: tuple[Any, ...] = ()
    engines_file: Path = field(default_factory=lambda: default_home() / "engines.json")


def defaults(env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment, falling back to the built-in defaults."""
    env = dict(os.environ) if env is None else env
    cache = Path(env[ENV_CACHE]).expanduser() if env.get(ENV_CACHE) else default_home() / "cache" / "models"
    catalogs = tuple(Path(p).expanduser() for p in env.get(ENV_CATALOGS, "").split(os.pathsep) if p)
    return Settings(
        cache_dir=cache,
        catalog_files=catalogs,
        ttl_s=int(env.get(ENV_TTL, DEFAULT_TTL_S)),
        execution_provider=env.get(ENV_EP) or None,
        max_loaded_models=int(env.get(ENV_MAX_LOADED, 4)),
        registry_file=cache.parent / "registered.json",
        engines_file=cache.parent / "engines.json",
    )
