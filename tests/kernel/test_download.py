"""`%foundry download` / `%foundry run` fetch a catalog model with a progress bar (from a hub stand-in on
127.0.0.1), then answer with it: the kernel-resident engine end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.hub import HubServer

REPO = "org/tinyhub-onnx"
SUB = "cpu-int4"
MODEL_ID = "tinyhub-generic-cpu:1"


@pytest.fixture
def hub(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    repo = tmp_path / "repo"
    shutil.copytree(tiny_model_dir, repo / SUB)
    catalog = tmp_path / "catalog.json"
    entry = {
        "name": "tinyhub-generic-cpu",
        "version": 1,
        "alias": "tinyhub",
        "publisher": "Test",
        "runtime": {"deviceType": "CPU", "executionProvider": "CPUExecutionProvider"},
        "fileSizeMb": 1,
        "task": "chat-completion",
        "license": "MIT",
        "source": {"kind": "huggingface", "repo": REPO, "subfolder": SUB},
    }
    catalog.write_text(json.dumps({"models": [entry]}))
    monkeypatch.setenv("FOUNDRY_JUPYTER_CATALOGS", str(catalog))
    with HubServer({REPO: repo}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def test_download_shows_progress_then_the_model_answers(
    hub: Any, shell: Any, magics: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = shell.run_line_magic("foundry", "list tinyhub")
    assert catalog["id"].tolist() == [MODEL_ID] and not catalog["cached"].iloc[0]

    shell.run_line_magic("config", "FoundryMagics.show_progress = True")
    notice = shell.run_line_magic("foundry", "download tinyhub")
    bar = capsys.readouterr().err
    assert "100%" in bar  # tqdm's bar reached the end (a terminal shell: tqdm writes to stderr)
    assert MODEL_ID in str(notice)
    assert hub.bytes_sent and sum(hub.bytes_sent.values()) >= notice.data["sizeBytes"] // 2

    cache = shell.run_line_magic("foundry", "cache")
    assert MODEL_ID in cache["id"].tolist()

    shell.run_line_magic("foundry", "run tinyhub -n 3 hello")  # cached now: no second transfer
    assert magics.session.active_model == MODEL_ID
    assert magics.session.conversation.messages[-1]["role"] == "assistant"


def test_run_downloads_what_is_missing(hub: Any, shell: Any, magics: Any) -> None:
    shell.run_line_magic("foundry", "run --max-tokens 3 tinyhub hi there")
    assert magics.session.active_model == MODEL_ID
    assert shell.run_line_magic("foundry", "ps")["id"].tolist() == [MODEL_ID]


@pytest.mark.usefixtures("sigint_interrupts")
def test_interrupting_the_kernel_cancels_the_download(hub: Any, shell: Any) -> None:
    import os
    import signal

    from foundry_jupyter.kernel.magics import FoundryCellError

    for path in hub.repos[REPO].files:
        hub.slow(path, 0.2)  # 16 KiB every 0.2 s: the interrupt lands mid-transfer
    magics = shell.magics_manager.registry["FoundryMagics"]
    sent: list[int] = []

    def interrupt_once(done: int, total: int | None, label: str) -> None:
        if not sent:
            sent.append(done)
            os.kill(os.getpid(), signal.SIGINT)  # what the notebook's Interrupt button sends the kernel

    with pytest.raises(FoundryCellError, match="download of tinyhub cancelled"):
        magics._guard(lambda: magics.session.backend.download("tinyhub", interrupt_once))
    assert sent
    assert MODEL_ID not in shell.run_line_magic("foundry", "cache")["id"].tolist()
