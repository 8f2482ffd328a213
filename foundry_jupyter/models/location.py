"""Where the cache lives after `cache cd`: a small pointer file in the foundry-jupyter home.

The pointer only replaces the built-in default location. A location set explicitly (the
`FOUNDRY_JUPYTER_CACHE` variable, traitlets config) always wins, and `cache cd` then reports that
the setting must be changed to match.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import Settings, default_home

POINTER_NAME = "cache-location.json"


def builtin_cache_dir() -> Path:
    return default_home() / "cache" / "models"


def pointer_file() -> Path:
    return default_home() / POINTER_NAME


def is_default(settings: Settings) -> bool:
    return Path(settings.cache_dir).expanduser() == builtin_cache_dir()


def effective_cache_dir(settings: Settings) -> Path:
    """settings.cache_dir, unless it is the built-in default and `cache cd` moved the cache since."""
    if is_default(settings):
        try:
            saved = json.loads(pointer_file().read_text(encoding="utf-8")).get("cacheDir")
        except (OSError, ValueError, AttributeError):
            saved = None
        if saved:
            return Path(saved)
    return Path(settings.cache_dir).expanduser()


def save_cache_dir(settings: Settings, new_root: Path) -> bool:
    """Remember `new_root` for later runs; False when an explicit setting overrides the pointer."""
    if not is_default(settings):
        return False
    path = pointer_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"cacheDir": str(new_root)}) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return True
