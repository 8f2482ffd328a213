"""`jupyter foundry zip-logs`: everything a bug report needs, and no token or key from anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from foundry_jupyter.service.diagnostics import REDACTED, redact

JUPYTER_TOKEN = "c0ffee1234567890deadbeefcafe0001"  # a running server's token (its runtime file)
ENV_TOKEN = "envtoken-5a5a5a5a5a5a5a5a"  # FOUNDRY_JUPYTER_TOKEN in the environment
HF_TOKEN = "hf_PlantedHubToken0123456789abcdefXYZ"  # the Hugging Face token file
OPENAI_KEY = "sk-planted-openai-key-0123456789abcdef"  # an API key in the environment
CONFIG_PASSWORD = "argon2:planted-password-hash-0123"  # c.ServerApp.password in a config file
LOG_ONLY_TOKEN = "logonlytoken9876543210fedcba"  # appears only in a log line's URL
LOG_BEARER = "bearer-only-in-a-runner-log-777"  # an Authorization header in a runner log
SECRETS = (JUPYTER_TOKEN, ENV_TOKEN, HF_TOKEN, OPENAI_KEY, CONFIG_PASSWORD, LOG_ONLY_TOKEN, LOG_BEARER)


@pytest.fixture
def planted(tmp_path: Path, tiny_cache_dir: Path):
    """A HOME, Jupyter dirs, a cache and logs holding the secrets above; yields (env, runner log)."""
    import shutil

    home = tmp_path / "home"
    runtime = tmp_path / "runtime"
    config = tmp_path / "config"
    hf_home = tmp_path / "hf"
    for folder in (home, runtime, config / "jupyter_server_config.d", hf_home):
        folder.mkdir(parents=True)
    cache = tmp_path / "cache" / "models"
    shutil.copytree(tiny_cache_dir, cache)
    (hf_home / "token").write_text(HF_TOKEN)
    (runtime / "jpserver-4242.json").write_text(
        json.dumps({"url": "http://127.0.0.1:9/", "token": JUPYTER_TOKEN, "pid": 4242, "base_url": "/"})
    )
    (config / "jupyter_server_config.py").write_text(
        f"c.ServerApp.password = '{CONFIG_PASSWORD}'\nc.FoundryApp.ttl = 60\n"
    )
    (config / "jupyter_server_config.d" / "extra.json").write_text(
        json.dumps({"IdentityProvider": {"token": JUPYTER_TOKEN}})
    )
    (runtime / "foundry-service.log").write_text(
        "[I 2026-12-06 ServerApp] Jupyter Server is running at:\n"
        f"[I 2026-12-06 ServerApp] http://127.0.0.1:8888/lab?token={LOG_ONLY_TOKEN}\n"
        f"[I 2026-12-06 ServerApp] also http://127.0.0.1:8888/lab?token={JUPYTER_TOKEN}\n"
        "[I 2026-12-06 foundry] runner for tiny-generic-cpu:1 ready\n"
    )
    runner_dir = Path(tempfile.mkdtemp(prefix="fj-runner-"))
    (runner_dir / "runner.log").write_text(
        f"loaded tiny\nrequest headers: Authorization: Bearer {LOG_BEARER}\n"
        f"key {ENV_TOKEN} echoed\nsession {JUPYTER_TOKEN}\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "FOUNDRY_JUPYTER_", "JUPYTER"))}
    env = {
        **base,
        "HOME": str(home),
        "FOUNDRY_JUPYTER_CACHE": str(cache),
        "FOUNDRY_JUPYTER_TOKEN": ENV_TOKEN,
        "FOUNDRY_JUPYTER_URL": "http://127.0.0.1:9/foundry/",
        "OPENAI_API_KEY": OPENAI_KEY,
        "HF_HOME": str(hf_home),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_CONFIG_DIR": str(config),
    }
    yield env, runner_dir
    shutil.rmtree(runner_dir, ignore_errors=True)


def test_the_bundle_holds_the_diagnostics_and_no_secret(planted, tmp_path) -> None:
    env, runner_dir = planted
    out = tmp_path / "bundle.zip"
    done = subprocess.run(
        [sys.executable, "-m", "foundry_jupyter.cli", "zip-logs", "--out", str(out), "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["path"] == str(out)
    with zipfile.ZipFile(out) as archive:
        files = {name: archive.read(name).decode() for name in archive.namelist()}
    everything = "\n".join(files.values())
    for secret in SECRETS:
        assert secret not in everything, f"{secret} survived"
    raw = out.read_bytes()  # and not hidden by compression either: the stored bytes, decompressed above
    assert all(secret.encode() not in raw for secret in SECRETS)

    assert {"versions.json", "hardware.json", "catalog.json", "cache.json", "environment.json"} <= set(files)
    assert json.loads(files["versions.json"])["onnxruntime-genai"]
    assert "cpu" in json.loads(files["hardware.json"])["usableProviders"]
    assert any(m["id"] == "tiny-generic-cpu:1" for m in json.loads(files["cache.json"])["models"])
    assert any(m["alias"] == "phi-4-mini" for m in json.loads(files["catalog.json"])["models"])
    assert "tiny-generic-cpu-1" in files["cache-files.txt"]
    environment = json.loads(files["environment.json"])
    assert environment["FOUNDRY_JUPYTER_TOKEN"] == REDACTED and environment["OPENAI_API_KEY"] == REDACTED
    assert environment["FOUNDRY_JUPYTER_URL"] == "http://127.0.0.1:9/foundry/"
    # the logs are there, with only their secrets cut out
    service_log = files["logs/foundry-service.log"]
    assert "runner for tiny-generic-cpu:1 ready" in service_log and f"token={REDACTED}" in service_log
    runner_log = files[f"logs/{runner_dir.name}-runner.log"]
    assert "loaded tiny" in runner_log and "Authorization: Bearer [redacted]" in runner_log
    config = next(text for name, text in files.items() if name.endswith("jupyter_server_config.py"))
    assert "c.FoundryApp.ttl = 60" in config and f"password = '{REDACTED}'" in config


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('{"prompt_tokens": 12, "tokenCount": 3, "maxOutputTokens": 4096}', True),
        ("GET /foundry/v1/models 200", True),
        ("HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz", False),
        ('"api_key": "abc123def456"', False),
        ("curl -H 'Authorization: token abcdef123456'", False),
        ("https://host/lab?token=abcdef123456&x=1", False),
    ],
)
def test_redact_cuts_credentials_and_keeps_counts(text: str, kept: bool) -> None:
    assert (redact(text) == text) is kept
    if not kept:
        assert REDACTED in redact(text)
