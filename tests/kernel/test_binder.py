"""binder/ opens the repository with the extension installed and the quick start ready."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_post_build_installs_this_checkout() -> None:
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK)
    text = post_build.read_text()
    assert "pip install --no-cache-dir -e ." in text
    assert "ensure('tiny')" in text
    subprocess.run(["bash", "-n", str(post_build)], check=True)  # parses


def test_requirements_are_plain_package_names() -> None:
    lines = [ln.strip() for ln in (ROOT / "binder" / "requirements.txt").read_text().splitlines()]
    requirements = [ln for ln in lines if ln and not ln.startswith("#")]
    assert "jupyterlab>=4.2" in requirements
    assert all(not r.startswith(("-e", ".", "/")) for r in requirements)


def test_the_quick_start_builds_its_model_offline(tmp_path: Path) -> None:
    """What postBuild's last line does, in a fresh cache."""
    env = {**os.environ, "FOUNDRY_JUPYTER_CACHE": str(tmp_path / "models"), "HF_HUB_OFFLINE": "1"}
    line = (ROOT / "binder" / "postBuild").read_text().strip().splitlines()[-1]
    assert line.startswith('python -c "')
    code = line[len('python -c "') : -1]
    subprocess.run(["python3", "-c", code], check=True, env=env, timeout=120)
    assert list((tmp_path / "models").rglob("genai_config.json"))
