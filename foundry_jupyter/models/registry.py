"""Bring-your-own models: local ONNX GenAI folders registered under an alias, kept in a JSON file.

A registration points at the folder where it is (nothing is copied): removing it forgets the alias
and never deletes the folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import InvalidRequest
from .cache import GENAI_CONFIG, folder_size, read_runtime
from .catalog import CatalogEntry, LocalSource, Runtime, load_catalog_file

ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_alias(alias: str) -> None:
    """Refuse an alias that cannot be a catalog name (nor a cache folder name)."""
    if not ALIAS_PATTERN.match(alias or ""):
        raise InvalidRequest(f"Bad alias {alias!r}: use letters, digits, '.', '_' and '-'", param="alias")


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()

    def entries(self) -> list[CatalogEntry]:
        if not self.path.is_file():
            return []
        return load_catalog_file(self.path)

    def add(self, folder: Path, alias: str) -> CatalogEntry:
        """Register `folder` as `alias` (replacing an earlier registration of that alias)."""
        check_alias(alias)
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise InvalidRequest(f"Not a folder: {folder}")
        if not (folder / GENAI_CONFIG).is_file():
            raise InvalidRequest(
                f"{folder} is not an ONNX GenAI model folder: it has no {GENAI_CONFIG} "
                "(convert the model with onnxruntime-genai's model builder or Olive first)"
            )
        device, provider = read_runtime(folder)
        entry = CatalogEntry(
            name=alias,
            version=1,
            alias=alias,
            display_name=folder.name,
            publisher="local",
            runtime=Runtime(device_type=device, execution_provider=provider),
            file_size_mb=max(1, round(folder_size(folder) / 2**20)),
            context_length=_context_length(folder),
            license=None,
            provider_type="Local",
            source=LocalSource(path=str(folder)),
        )
        kept = [e for e in self.entries() if e.alias.lower() != alias.lower()]
        self._save([*kept, entry])
        return entry

    def remove(self, alias_or_id: str) -> CatalogEntry | None:
        entries = self.entries()
        key = alias_or_id.lower()
        gone = [e for e in entries if key in (e.alias.lower(), e.id.lower())]
        if gone:
            self._save([e for e in entries if e not in gone])
        return gone[0] if gone else None

    def _save(self, entries: list[CatalogEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(
            json.dumps({"models": [e.to_json() for e in entries]}, indent=2) + "\n", encoding="utf-8"
        )
        os.replace(tmp, self.path)


def _context_length(folder: Path) -> int | None:
    try:
        config = json.loads((folder / GENAI_CONFIG).read_text(encoding="utf-8"))
        return int(config["model"]["context_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
