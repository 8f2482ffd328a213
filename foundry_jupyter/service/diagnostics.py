"""A diagnostics bundle, as Foundry Local's `foundry zip-logs` makes: one zip to attach to a bug report.

It holds the service and runner logs, the hardware report, package versions, the catalog and cache
listings, the relevant environment variables and the Jupyter server config files. Every file passes
through `redact` first: the values of secrets this process can see (environment variables named like
tokens or keys, running Jupyter servers' tokens, the Hugging Face token) are replaced wherever they
appear, and so is anything shaped like a credential (`?token=`, `Authorization:` headers, `hf_...`,
`sk-...`, `token = ...` settings).
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REDACTED = "[redacted]"
MAX_LOG_BYTES = 4 * 1024 * 1024  # the end of a log is what explains a failure
MAX_CACHE_LINES = 5000
SERVICE_LOG = "foundry-service.log"
RUNNER_GLOB = "fj-runner-*/runner.log"
PACKAGES = (
    "foundry-jupyter",
    "onnxruntime-genai",
    "onnxruntime",
    "onnx",
    "numpy",
    "huggingface-hub",
    "tokenizers",
    "jupyter-server",
    "jupyterlab",
    "notebook",
    "ipykernel",
    "ipywidgets",
    "tornado",
    "pydantic",
    "openai",
    "tqdm",
)
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSW|AUTH|CREDENTIAL|COOKIE|SIGNATURE", re.IGNORECASE)
_ENV_PREFIXES = ("FOUNDRY_JUPYTER_", "HF_", "HUGGING", "JUPYTER", "PIP_", "OMP_", "ORT_", "CUDA", "OPENAI_")
_ENV_NAMES = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH", "BINDER_LAUNCH_HOST")
_CREDENTIAL_PATTERNS = (
    # query parameters: ?token=..., &api_key=...
    re.compile(r"(?i)([?&](?:token|api[_-]?key|access[_-]?token|key|sig|signature|password)=)[^&\s\"'#<>]+"),
    # HTTP headers: Authorization: token|Bearer|Basic ..., X-Api-Key: ...
    re.compile(
        r"(?i)((?:authorization|x-api-key|api-key|cookie)[\"']?\s*[:=]\s*[\"']?(?:token |bearer |basic )?)"
        r"[^\s\"',]+"
    ),
    # settings and JSON fields: token = '...', "api_key": "...", HF_TOKEN=..., c.ServerApp.password = ...
    re.compile(
        r"(?i)(\b[\w.-]*(?:token|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key|secret|password|passwd)"
        r"[\"']?\s*[:=]\s*[\"']?)(?![\"',}\s]|\[redacted\])[^\s\"',}]+"
    ),
    re.compile(r"\bhf_[A-Za-z0-9]{16,}"),  # Hugging Face tokens
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),  # OpenAI-style API keys
)
_MIN_SECRET_LEN = 6  # shorter values ("1", "yes") would blank out unrelated text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secret values and without anything shaped like a credential."""
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern in _CREDENTIAL_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def known_secrets(env: Mapping[str, str] | None = None, runtime_dir: Path | None = None) -> set[str]:
    """Secret values this process can see: token- and key-named variables, Jupyter servers' tokens
    (their runtime files), the Hugging Face token."""
    env = os.environ if env is None else env
    found = {value for name, value in env.items() if _SECRET_NAME.search(name)}
    for info in _runtime_files(runtime_dir):
        try:
            token = json.loads(info.read_text()).get("token")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(token, str):
            found.add(token)
    try:
        from huggingface_hub import get_token

        if token := get_token():
            found.add(token)
    except Exception:  # no token file, or a library version without get_token: nothing to hide
        pass
    return {s for s in found if s}


def default_log_files(runtime_dir: Path | None = None) -> list[Path]:
    """The service log `jupyter foundry service start` writes and the logs of live runner processes."""
    files = []
    service_log = _runtime_dir(runtime_dir) / SERVICE_LOG
    if service_log.is_file():
        files.append(service_log)
    uid = os.getuid() if hasattr(os, "getuid") else None
    for log in sorted(Path(tempfile.gettempdir()).glob(RUNNER_GLOB)):
        try:
            if uid is None or log.stat().st_uid == uid:  # only this user's runners
                files.append(log)
        except OSError:
            continue
    return files


def build_bundle(
    manager: Any,
    *,
    log_files: Iterable[Path] | None = None,
    extra: Mapping[str, Any] | None = None,
    secrets: Iterable[str] = (),
    runtime_dir: Path | None = None,
) -> bytes:
    """The zip's bytes. `manager` is a `ModelManager`; `extra` adds JSON files (name -> data)."""
    hidden = known_secrets(runtime_dir=runtime_dir) | set(secrets)
    buffer = io.BytesIO()
    written: list[str] = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, content: str) -> None:
            archive.writestr(name, redact(content, hidden))
            written.append(name)

        def add_json(name: str, make: Any) -> None:
            try:
                data = make() if callable(make) else make
            except Exception as exc:  # a broken part must not lose the rest of the bundle
                data = {"error": f"{type(exc).__name__}: {exc}"}
            add(name, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

        add_json("versions.json", _versions)
        add_json("hardware.json", _hardware)
        add_json("catalog.json", lambda: _catalog(manager))
        add_json("cache.json", lambda: _cache(manager))
        add("cache-files.txt", _safe(lambda: _cache_files(manager.cache.root)))
        add_json("environment.json", _environment)
        for name, data in (extra or {}).items():
            add_json(name, data)
        for config in _config_files():
            add(f"config/{_flat(config)}", _safe(lambda c=config: c.read_text(errors="replace")))
        for log in log_files if log_files is not None else default_log_files(runtime_dir):
            name = f"logs/{log.parent.name}-{log.name}" if log.name == "runner.log" else f"logs/{log.name}"
            add(name, _safe(lambda p=log: _tail(p)))
        add("README.txt", _readme(written))
    return buffer.getvalue()


def bundle_name() -> str:
    return time.strftime("foundry-logs-%Y%m%d-%H%M%S.zip")


# -- parts
def _versions() -> dict[str, Any]:
    import importlib.metadata

    versions: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _hardware() -> dict[str, Any]:
    from ..engine.hardware import hardware_report

    return hardware_report().to_dict()


def _catalog(manager: Any) -> dict[str, Any]:
    cached = {m.id.lower() for m in manager.list_cached()}
    return {
        "usableProviders": manager.usable_providers(),
        "models": [e.to_foundry(cached=e.id.lower() in cached) for e in manager.entries()],
    }


def _cache(manager: Any) -> dict[str, Any]:
    return {"location": str(manager.cache.root), "models": [m.to_dict() for m in manager.list_cached()]}


def _cache_files(root: Path) -> str:
    """Every file under the cache with its size: half-finished downloads show here."""
    lines = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            lines.append(f"{path.stat().st_size:>14}  {path.relative_to(root)}")
            if len(lines) >= MAX_CACHE_LINES:
                lines.append("... (more files left out)")
                break
    return f"{root}\n" + "\n".join(lines) + "\n"


def _environment() -> dict[str, str]:
    chosen = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(_ENV_PREFIXES) or name in _ENV_NAMES
    }
    return {name: REDACTED if _SECRET_NAME.search(name) else value for name, value in sorted(chosen.items())}


def _config_files() -> list[Path]:
    """The Jupyter server config files that may configure this extension."""
    try:
        from jupyter_core.paths import jupyter_config_path
    except ImportError:
        return []
    found = []
    for folder in map(Path, jupyter_config_path()):
        for name in ("jupyter_server_config.json", "jupyter_server_config.py"):
            if (folder / name).is_file():
                found.append(folder / name)
        found.extend(sorted((folder / "jupyter_server_config.d").glob("*.json")))
    return found


def _runtime_dir(runtime_dir: Path | None) -> Path:
    if runtime_dir is not None:
        return runtime_dir
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def _runtime_files(runtime_dir: Path | None) -> list[Path]:
    try:
        folder = _runtime_dir(runtime_dir)
    except Exception:
        return []
    return sorted(folder.glob("jpserver-*.json")) + sorted(folder.glob("nbserver-*.json"))


def _tail(path: Path) -> str:
    size = path.stat().st_size
    with path.open("rb") as f:
        if size > MAX_LOG_BYTES:
            f.seek(size - MAX_LOG_BYTES)
            f.readline()  # start on a whole line
            head = f"[the first {size - MAX_LOG_BYTES} bytes are left out]\n"
        else:
            head = ""
        return head + f.read().decode("utf-8", errors="replace")


def _safe(read: Any) -> str:
    try:
        return read()
    except Exception as exc:
        return f"could not read: {type(exc).__name__}: {exc}\n"


def _flat(path: Path) -> str:
    return "_".join(part for part in path.parts[-3:] if part not in ("/", "\\"))


def _readme(files: list[str]) -> str:
    listing = "\n".join(f"  {name}" for name in files)
    return (
        "foundry-jupyter diagnostics bundle\n"
        f"made {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n\n"
        f"{listing}\n\n"
        f"Tokens, keys and passwords were replaced by {REDACTED}. Look through the files before sharing.\n"
    )
