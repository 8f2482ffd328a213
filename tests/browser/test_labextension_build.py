"""The extension as installed: Jupyter lists it OK, and its TypeScript passes lint and unit tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LABEXTENSION = Path(__file__).resolve().parents[2] / "labextension"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=180)
    output = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, f"{' '.join(cmd)} exited with {done.returncode}:\n{output[-4000:]}"
    return output


def _jupyter(*args: str) -> str:
    return _run([sys.executable, "-m", "jupyter", *args])


def test_jupyter_lists_the_labextension_enabled_and_ok() -> None:
    listing = _jupyter("labextension", "list")
    if "foundry-jupyter" not in listing:
        pytest.skip("the foundry-jupyter labextension is not built (pip install without Node?)")
    line = next(line for line in listing.splitlines() if "foundry-jupyter" in line)
    assert "enabled" in line and "OK" in line, line


def test_jupyter_lists_the_server_extension_enabled_and_ok() -> None:
    listing = _jupyter("server", "extension", "list")
    assert re.search(r"foundry_jupyter\s+enabled", listing), listing
    assert re.search(r"foundry_jupyter \S+ OK", listing), listing


@pytest.fixture(scope="module")
def jlpm() -> str:
    if not (LABEXTENSION / "node_modules").is_dir() or shutil.which("node") is None:
        pytest.skip("labextension/node_modules is missing: the JavaScript build was skipped")
    found = shutil.which("jlpm")
    if found is None:
        pytest.skip("jlpm (from jupyter-builder) is not on PATH")
    return found


def test_typescript_unit_tests_pass(jlpm: str) -> None:
    output = _run([jlpm, "run", "test"], cwd=LABEXTENSION)
    assert re.search(r"^# fail 0$", output, re.MULTILINE), output[-2000:]


def test_typescript_lint_passes(jlpm: str) -> None:
    _run([jlpm, "run", "lint"], cwd=LABEXTENSION)
