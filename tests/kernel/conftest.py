"""A real IPython InteractiveShell with the extension loaded, the kernel-resident engine and a private
copy of the tiny model's cache; display calls are recorded instead of sent to a front end."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from IPython.core.displaypub import DisplayPublisher

from foundry_jupyter.config import ENV_SERVICE_TOKEN, ENV_SERVICE_URL


class RecordingDisplay(DisplayPublisher):
    """Stands in for the shell's display publisher: keeps every display / update_display call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[dict[str, Any]] = []

    def publish(self, data: Any, metadata: Any = None, source: Any = None, **kwargs: Any) -> None:
        self.calls.append(
            {
                "data": dict(data),
                "metadata": dict(metadata or {}),
                "display_id": (kwargs.get("transient") or {}).get("display_id"),
                "update": bool(kwargs.get("update")),
            }
        )

    def clear_output(self, wait: bool = False) -> None:
        self.calls.append({"clear": True})

    def texts(self, display_id: str | None = None) -> list[str]:
        return [
            c["data"].get("text/plain", "")
            for c in self.calls
            if "data" in c and (display_id is None or c["display_id"] == display_id)
        ]


@pytest.fixture
def cache_copy(tiny_cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dest = tmp_path / "cache" / "models"
    shutil.copytree(tiny_cache_dir, dest)
    monkeypatch.setenv("FOUNDRY_JUPYTER_CACHE", str(dest))
    monkeypatch.delenv(ENV_SERVICE_URL, raising=False)
    monkeypatch.delenv(ENV_SERVICE_TOKEN, raising=False)
    return dest


@pytest.fixture
def shell(cache_copy: Path) -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance()
    ip.display_pub = RecordingDisplay(shell=ip)
    ip.run_line_magic("load_ext", "foundry_jupyter")
    ip.run_line_magic("config", "FoundryMagics.stream_mode = 'display'")
    ip.run_line_magic("config", "FoundryMagics.max_updates_per_s = 0")  # every delta redraws: countable
    ip.run_line_magic("config", "FoundryMagics.max_tokens = 12")
    ip.run_line_magic("config", "FoundryMagics.show_progress = False")
    yield ip
    magics = ip.magics_manager.registry["FoundryMagics"]
    magics.session.close()
    InteractiveShell.clear_instance()


@pytest.fixture
def magics(shell: Any) -> Any:
    return shell.magics_manager.registry["FoundryMagics"]


@pytest.fixture
def sigint_interrupts() -> Any:
    """SIGINT raises KeyboardInterrupt in the main thread, as in an ipykernel kernel, whatever handler
    an earlier test or library left installed."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
