"""The model cache on disk, in Foundry Local's layout.

`<root>/<Publisher>/<name>-<version>/` holds a model folder (`genai_config.json`, onnx and tokenizer
files) and `inference_model.json`, written last: a folder is a cached model only when it has both
files and no `download.tmp`. Work in progress lives in a sibling `<name>-<version>.partial/` folder
and is renamed into place when whole, so a scan never sees half a model.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import CacheReadOnly, InvalidRequest, ModelNotFound
from .providers import long_provider, short_provider

MARKER = "inference_model.json"
GENAI_CONFIG = "genai_config.json"
EMBEDDING_CONFIG = "embedding_config.json"  # an embedding model's folder (see engine.embeddings)
IN_PROGRESS = "download.tmp"
STAGING_SUFFIX = ".partial"
LAST_USED = ".last_used"
_MAX_DEPTH = 4  # <Publisher>/<model>/<variant subfolder>: deeper folders are not models
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")  # also every character Windows refuses: <>:"/\\|?* and controls
# Device names Windows reserves in every folder, with any extension ("CON", "nul.txt")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
_MAX_SEGMENT = 200  # under the 255 a path segment may have everywhere, leaving room for ".partial"


@dataclass(frozen=True)
class CachedModel:
    id: str
    alias: str
    path: Path
    size_bytes: int
    device: str
    execution_provider: str
    last_used: datetime | None = None
    publisher: str = ""
    registered: bool = False  # a bring-your-own folder outside the cache, not a cached copy

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape the REST API and `--output json` use."""
        return {
            "id": self.id,
            "alias": self.alias,
            "device": self.device,
            "executionProvider": self.execution_provider,
            "sizeBytes": self.size_bytes,
            "path": str(self.path),
            "lastUsed": self.last_used.isoformat() if self.last_used else None,
            "publisher": self.publisher,
            "registered": self.registered,
        }


def safe_segment(text: str) -> str:
    """A path segment valid on Windows, macOS and Linux, as Foundry sanitizes `<name>-<version>`: unsafe
    characters (`:` among them) become `_`, no leading or trailing dot, no reserved device name. The
    model id itself is kept in `inference_model.json`, so the name need not be reversible."""
    cleaned = _UNSAFE.sub("_", text).strip(".") or "_"
    if cleaned.split(".")[0].upper() in _RESERVED:
        cleaned = "_" + cleaned
    if len(cleaned) > _MAX_SEGMENT:
        digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        cleaned = f"{cleaned[: _MAX_SEGMENT - len(digest) - 1]}-{digest}"
    return cleaned


def normalize_id(name: str) -> str:
    """Foundry's scan rule: a `Name` without `:version` is version 0."""
    return name if ":" in name else f"{name}:0"


def folder_size(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        try:  # a download may rename or remove files while we count
            if f.is_file() and f.name != LAST_USED:
                total += f.stat().st_size
        except OSError:
            continue
    return total


def read_runtime(model_dir: Path) -> tuple[str, str]:
    """(deviceType, executionProvider) from genai_config.json's first provider_options key."""
    try:
        config = json.loads((model_dir / GENAI_CONFIG).read_text(encoding="utf-8"))
        options = config["model"]["decoder"]["session_options"].get("provider_options") or []
        provider = next(iter(options[0])) if options and options[0] else "cpu"
    except (OSError, ValueError, KeyError, TypeError, StopIteration, AttributeError):
        provider = "cpu"
    short = short_provider(provider)
    device = "CPU" if short == "cpu" else "NPU" if short in ("qnn", "vitisai") else "GPU"
    return device, long_provider(short)


def describe(model_dir: Path, marker: dict[str, Any], *, registered: bool = False) -> CachedModel:
    model_id = normalize_id(str(marker["Name"]))
    runtime = marker.get("Runtime") or {}
    device, provider = read_runtime(model_dir)
    try:
        last_used = datetime.fromtimestamp((model_dir / LAST_USED).stat().st_mtime, UTC)
    except OSError:
        last_used = None
    return CachedModel(
        id=model_id,
        alias=str(marker.get("Alias") or model_id.rsplit(":", 1)[0]),
        path=model_dir,
        size_bytes=folder_size(model_dir),
        device=str(runtime.get("deviceType") or device),
        execution_provider=str(runtime.get("executionProvider") or provider),
        last_used=last_used,
        publisher=str(marker.get("Publisher") or ""),
        registered=registered,
    )


def folder_context_length(path: Path) -> int | None:
    """The context length a model folder states (genai_config.json or embedding_config.json), if any."""
    try:
        if (path / EMBEDDING_CONFIG).is_file():
            return int(json.loads((path / EMBEDDING_CONFIG).read_text(encoding="utf-8"))["context_length"])
        return int(json.loads((path / GENAI_CONFIG).read_text(encoding="utf-8"))["model"]["context_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_model_folder(path: Path) -> bool:
    """A folder holding a model this package runs: an ONNX GenAI chat model or an embedding model."""
    return (path / GENAI_CONFIG).is_file() or (path / EMBEDDING_CONFIG).is_file()


def read_marker(model_dir: Path) -> dict[str, Any] | None:
    """inference_model.json's content when `model_dir` is a complete model folder, else None."""
    if (model_dir / IN_PROGRESS).exists() or not is_model_folder(model_dir):
        return None
    try:
        marker = json.loads((model_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not marker.get("Name"):
        return None
    return marker


class ModelCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    # -- layout
    def model_dir(self, model_id: str, publisher: str) -> Path:
        name, _, version = normalize_id(model_id).rpartition(":")
        return self.root / safe_segment(publisher or "local") / safe_segment(f"{name}-{version}")

    def staging_dir(self, model_id: str, publisher: str) -> Path:
        final = self.model_dir(model_id, publisher)
        return final.with_name(final.name + STAGING_SUFFIX)

    # -- reading
    def scan(self) -> list[CachedModel]:
        """Every complete model under the root, sorted by id."""
        found = [describe(d, m) for d, m in self._walk()]
        return sorted(found, key=lambda m: m.id.lower())

    def _walk(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        if not self.root.is_dir():
            return
        try:
            top = sorted(self.root.iterdir())
        except OSError:
            return
        stack = [(p, 1) for p in top if p.is_dir() and not p.is_symlink()]
        while stack:
            folder, depth = stack.pop()
            if folder.name.startswith(".") or folder.name.endswith(STAGING_SUFFIX):
                continue
            marker = read_marker(folder)
            if marker is not None:
                yield folder, marker
                continue  # Foundry's rule: never descend into a model folder
            if depth < _MAX_DEPTH and not (folder / IN_PROGRESS).exists():
                try:
                    children = sorted(folder.iterdir())
                except OSError:
                    continue
                stack.extend((p, depth + 1) for p in children if p.is_dir() and not p.is_symlink())

    def find(self, model_id: str) -> CachedModel | None:
        wanted = normalize_id(model_id).lower()
        for folder, marker in self._walk():
            if normalize_id(str(marker["Name"])).lower() == wanted:
                return describe(folder, marker)
        return None

    # -- writing
    def install(
        self,
        staging: Path,
        model_id: str,
        publisher: str,
        *,
        alias: str,
        device: str,
        execution_provider: str,
        prompt_template: dict[str, str] | None = None,
    ) -> CachedModel:
        """Finish a staged model folder: write inference_model.json last, then rename it into place.

        An older copy at the destination is replaced only after the new one is whole.
        """
        staging = Path(staging)
        if not is_model_folder(staging):
            raise InvalidRequest(f"{model_id}: the model folder has no {GENAI_CONFIG}")
        marker = {
            "Name": model_id,
            "PromptTemplate": prompt_template,
            "Alias": alias,
            "Publisher": publisher,
            "Runtime": {"deviceType": device, "executionProvider": execution_provider},
        }
        tmp_marker = staging / f".{MARKER}.tmp"
        tmp_marker.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_marker, staging / MARKER)
        (staging / IN_PROGRESS).unlink(missing_ok=True)
        final = self.model_dir(model_id, publisher)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            old = final.with_name(final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
        found = read_marker(final)
        assert found is not None
        return describe(final, found)

    def touch(self, model_id: str) -> None:
        """Record that a model was just used (shown as `last used`)."""
        model = self.find(model_id)
        if model is not None:
            # A read-only cache (shared, mounted) still serves its models; only the stamp is lost.
            with contextlib.suppress(OSError):
                (model.path / LAST_USED).touch()

    def remove(self, model_id: str) -> CachedModel:
        """Delete a cached model's folder; never anything outside the cache root."""
        model = self.find(model_id)
        if model is None:
            raise ModelNotFound(f"Model {model_id} is not in the cache at {self.root}")
        root = self.root.resolve()
        target = model.path.resolve()
        if target == root or not target.is_relative_to(root) or model.path.is_symlink():
            raise InvalidRequest(f"Refusing to delete {model.path}: it is not inside the cache {root}")
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise _read_only(target.parent)
        try:
            shutil.rmtree(target)
        except FileNotFoundError:  # another request removed it first
            raise ModelNotFound(f"Model {model_id} is not in the cache at {self.root}") from None
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise _read_only(Path(exc.filename or target.parent)) from None
            raise
        for leftover in (target.with_name(target.name + STAGING_SUFFIX),):
            shutil.rmtree(leftover, ignore_errors=True)
        parent = target.parent
        # Empty publisher folders go too; one that a download or another removal changes meanwhile stays.
        with contextlib.suppress(OSError):
            while parent != root and parent.is_relative_to(root) and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        return model

    def move(self, new_root: Path) -> Path:
        """Move everything in the cache to `new_root` (absent or empty) and use it from now on."""
        old = self.root.resolve()
        new = Path(new_root).expanduser().resolve()
        if new == old:
            return new
        if new.is_relative_to(old) or old.is_relative_to(new):
            raise InvalidRequest(f"Cannot move the cache from {old} to {new}: one is inside the other")
        if new.exists() and (not new.is_dir() or any(new.iterdir())):
            raise InvalidRequest(f"Cannot move the cache to {new}: it exists and is not an empty folder")
        new.mkdir(parents=True, exist_ok=True)
        if old.is_dir():
            for child in sorted(old.iterdir()):
                shutil.move(str(child), str(new / child.name))
        self.root = new
        return new


def _read_only(place: Path) -> CacheReadOnly:
    return CacheReadOnly(
        f"Cannot remove the model: {place} is read-only (a shared or mounted cache?). Remove it where the "
        "cache is writable, or set FoundryApp.cache_dir to a writable folder."
    )
