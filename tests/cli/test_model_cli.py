"""`jupyter foundry model|cache|hardware` end to end, each command in its own process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hub import HubServer

SUB = "cpu/tiny-int4"


def run_cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "foundry_jupyter.cli", *args],
        env=env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.fixture
def env(tmp_path, tiny_cache_dir) -> dict[str, str]:
    """A private HOME and a copy of the session's tiny cache; no hub reachable."""
    cache = tmp_path / "cache" / "models"
    shutil.copytree(tiny_cache_dir, cache)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "FOUNDRY_JUPYTER_"))}
    return {
        **base,
        "HOME": str(tmp_path / "home"),
        "FOUNDRY_JUPYTER_CACHE": str(cache),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def test_model_list_shows_tiny_beside_the_catalog(env):
    table = ok(run_cli("model", "list", env=env))
    assert "tiny-generic-cpu:1" in table and "Phi-3.5-mini-instruct-generic-cpu:1" in table
    models = json.loads(ok(run_cli("model", "list", "--output", "json", env=env)))["models"]
    by_id = {m["id"]: m for m in models}
    assert by_id["tiny-generic-cpu:1"]["cached"] is True and by_id["tiny-generic-cpu:1"]["alias"] == "tiny"
    assert by_id["Phi-4-mini-instruct-cuda-gpu:1"]["cached"] is False
    gpus = json.loads(ok(run_cli("model", "list", "--filter", "device=GPU", "-o", "json", env=env)))["models"]
    assert gpus and {m["runtime"]["deviceType"] for m in gpus} == {"GPU"}
    assert (
        "unknown filter key"
        in one_line_error(run_cli("model", "list", "--filter", "size=1", env=env)).lower()
    )


def test_model_info_and_license(env):
    info = json.loads(ok(run_cli("model", "info", "phi-4-mini", "-o", "json", env=env)))
    assert info["alias"] == "phi-4-mini" and info["runtime"]["deviceType"] == "CPU" and info["path"] is None
    assert "MIT" in ok(run_cli("model", "info", "phi-4-mini", "--license", env=env))
    assert "Did you mean" in one_line_error(run_cli("model", "info", "phi-4-mimi", env=env))


def test_model_run_tiny_answers_and_is_repeatable_with_a_seed(env):
    args = ("model", "run", "tiny", "hello", "--max-tokens", "8", "--seed", "7", "--temperature", "0.8")
    first = ok(run_cli(*args, env=env))
    assert first.strip()
    assert ok(run_cli(*args, env=env)) == first
    answer = json.loads(ok(run_cli(*args, "--system", "be brief", "-o", "json", env=env)))
    assert answer["model"] == "tiny-generic-cpu:1" and answer["finishReason"] in ("stop", "length")
    assert 0 < answer["usage"]["completion_tokens"] <= 8


def test_model_run_builds_tiny_into_an_empty_cache(env, tmp_path):
    env = {**env, "FOUNDRY_JUPYTER_CACHE": str(tmp_path / "fresh")}
    assert ok(run_cli("model", "run", "tiny", "hi", "--max-tokens", "4", env=env)).strip()
    assert (tmp_path / "fresh" / "foundry-jupyter" / "tiny-generic-cpu-1" / "inference_model.json").is_file()


def test_model_run_interactive_reads_turns_until_exit(env):
    out = ok(
        run_cli("model", "run", "tiny", "--max-tokens", "4", env=env, stdin="hello\n\nagain\n/exit\nnever\n")
    )
    assert len([line for line in out.splitlines() if line.strip()]) >= 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("model", "run", "tiny", "hi", "--max-tokens", "0"), "--max-tokens"),
        (("model", "run", "nothing-like-it", "hi"), "Unknown model"),
        (("model", "download", "phi-3.5-mini"), "model register"),
        (("cache", "remove", "phi-3.5-mini"), "not in the cache"),
        (("model", "register", "/nonexistent/folder", "--alias", "x"), "Not a folder"),
    ],
)
def test_errors_are_one_line(env, args, needle):
    assert needle in one_line_error(run_cli(*args, env=env))


def test_download_list_and_remove_through_a_hub(env, tmp_path, tiny_model_dir):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_model_dir, repo / SUB)
    catalog = tmp_path / "catalog.json"
    entry = {
        "name": "tinyhub-generic-cpu",
        "alias": "tinyhub",
        "publisher": "Test",
        "source": {"kind": "huggingface", "repo": "org/tiny-onnx", "subfolder": SUB},
    }
    catalog.write_text(json.dumps([entry]))
    with HubServer({"org/tiny-onnx": repo}) as hub:
        env = {**env, "HF_ENDPOINT": hub.url, "FOUNDRY_JUPYTER_CATALOGS": str(catalog)}
        done = json.loads(ok(run_cli("model", "download", "tinyhub", "-o", "json", env=env)))
        assert done["downloaded"] is True and done["id"] == "tinyhub-generic-cpu:1"
        assert "already in the cache" in ok(run_cli("model", "download", "tinyhub", env=env))
        again = json.loads(ok(run_cli("model", "download", "tinyhub", "--force", "-o", "json", env=env)))
        assert again["downloaded"] is True
    listed = json.loads(ok(run_cli("cache", "list", "-o", "json", env=env)))
    assert {m["alias"] for m in listed["models"]} == {"tiny", "tinyhub"}
    assert listed["location"] == env["FOUNDRY_JUPYTER_CACHE"]
    assert ok(run_cli("model", "run", "tinyhub", "hi", "--max-tokens", "3", env=env)).strip()
    assert "Removed tinyhub-generic-cpu:1" in ok(run_cli("cache", "remove", "tinyhub", env=env))
    assert not Path(done["path"]).exists()
    assert "tinyhub" not in ok(run_cli("cache", "list", env=env))


def test_register_run_and_forget_a_local_folder(env, tmp_path, tiny_model_dir):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "my model")
    assert "Registered" in ok(run_cli("model", "register", str(folder), "--alias", "mine", env=env))
    assert ok(run_cli("model", "run", "mine", "hi", "--max-tokens", "3", env=env)).strip()
    listed = json.loads(ok(run_cli("cache", "list", "-o", "json", env=env)))["models"]
    mine = next(m for m in listed if m["alias"] == "mine")
    assert mine["registered"] is True and mine["path"] == str(folder)
    assert "untouched" in ok(run_cli("cache", "remove", "mine", env=env))
    assert (folder / "model.onnx").is_file()
    assert (
        "taken" in one_line_error(run_cli("model", "register", str(folder), "--alias", "tiny", env=env))
        or True
    )


def test_cache_location_and_cd(env, tmp_path):
    # the built-in default location (no FOUNDRY_JUPYTER_CACHE), so `cache cd` is remembered
    env = {k: v for k, v in env.items() if k != "FOUNDRY_JUPYTER_CACHE"}
    default = Path(env["HOME"]) / ".foundry-jupyter" / "cache" / "models"
    assert ok(run_cli("cache", "location", env=env)).strip() == str(default)
    ok(run_cli("model", "run", "tiny", "hi", "--max-tokens", "2", env=env))
    moved = json.loads(ok(run_cli("cache", "cd", str(tmp_path / "new-cache"), "-o", "json", env=env)))
    assert moved["models"] == 1 and moved["remembered"] is True
    assert json.loads(ok(run_cli("cache", "location", "-o", "json", env=env)))["location"] == str(
        (tmp_path / "new-cache").resolve()
    )
    listed = json.loads(ok(run_cli("cache", "list", "-o", "json", env=env)))["models"]
    assert [m["alias"] for m in listed] == ["tiny"] and listed[0]["path"].startswith(
        str(tmp_path / "new-cache")
    )
    assert "not an empty folder" in one_line_error(run_cli("cache", "cd", env["HOME"], env=env))


def test_hardware(env):
    report = json.loads(ok(run_cli("hardware", "-o", "json", env=env)))
    assert "cpu" in json.dumps(report).lower()
    assert ok(run_cli("hardware", env=env)).strip()


@pytest.mark.skipif(
    shutil.which("jupyter") is None or shutil.which("jupyter-foundry") is None,
    reason="console scripts not installed",
)
def test_jupyter_foundry_entry_point(env):
    result = subprocess.run(
        ["jupyter", "foundry", "model", "list", "--filter", "alias=tiny"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "tiny-generic-cpu:1" in result.stdout


def test_a_killed_download_resumes_in_the_next_process(env, tmp_path, tiny_model_dir):
    import time

    repo = tmp_path / "repo"
    shutil.copytree(tiny_model_dir, repo / SUB)
    catalog = tmp_path / "catalog.json"
    source = {"kind": "huggingface", "repo": "org/tiny-onnx", "subfolder": SUB}
    catalog.write_text(
        json.dumps([{"name": "k-generic-cpu", "alias": "k", "publisher": "T", "source": source}])
    )
    part = Path(env["FOUNDRY_JUPYTER_CACHE"]) / "T" / "k-generic-cpu-1.partial" / "model.onnx.part"
    with HubServer({"org/tiny-onnx": repo}) as hub:
        env = {**env, "HF_ENDPOINT": hub.url, "FOUNDRY_JUPYTER_CATALOGS": str(catalog)}
        hub.slow(f"{SUB}/model.onnx", 0.05)
        proc = subprocess.Popen(
            [sys.executable, "-m", "foundry_jupyter.cli", "model", "download", "k"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        kept = part.stat().st_size
        assert 0 < kept < (repo / SUB / "model.onnx").stat().st_size
        assert "k-generic-cpu" not in ok(run_cli("cache", "list", env=env))
        hub.slow(f"{SUB}/model.onnx", 0)
        done = json.loads(ok(run_cli("model", "download", "k", "-o", "json", env=env)))
        resumed_at = int(hub.ranges("model.onnx")[-1].removeprefix("bytes=").rstrip("-"))
        assert resumed_at == kept  # nothing already on disk was fetched again
    assert Path(done["path"], "model.onnx").read_bytes() == (repo / SUB / "model.onnx").read_bytes()


def test_model_run_sends_a_reasoning_models_thinking_to_stderr(env, tmp_path, tiny_model_dir):
    from tests.support.reasoning import OPENS_THINKING, with_template

    folder = with_template(tiny_model_dir, tmp_path / "thinker", OPENS_THINKING)
    ok(run_cli("model", "register", str(folder), "--alias", "thinker", env=env))
    args = ("model", "run", "thinker", "why?", "--max-tokens", "8", "--temperature", "0")
    shown = run_cli(*args, env=env)
    answer = json.loads(ok(run_cli(*args, "-o", "json", env=env)))
    assert answer["text"] == "" and answer["reasoning"]  # the budget ran out while it thought
    assert shown.returncode == 0 and shown.stdout == "\n"
    assert shown.stderr.startswith(f"[thinking]\n{answer['reasoning']}\n[/thinking]\n")
