"""Our system: a real `jupyter server` process with the foundry_jupyter extension, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class JupyterServer:
    """One Jupyter server; `extension=False` starts the same server without ours (start-up baseline)."""

    def __init__(self, cache_dir: Path, port: int, workdir: Path, *, extension: bool = True) -> None:
        self.cache_dir = cache_dir
        self.port = port
        self.workdir = workdir
        self.extension = extension
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = float("nan")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    @property
    def openai_base(self) -> str:
        return f"{self.url}foundry/v1"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 120.0) -> JupyterServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "bench_config.py"
        config.write_text(f"c.ServerApp.jpserver_extensions = {{'foundry_jupyter': {self.extension}}}\n")
        env = dict(os.environ)
        # TTL 0: the model stays loaded for the whole run, as the peer's does.
        env.update(FOUNDRY_JUPYTER_CACHE=str(self.cache_dir), FOUNDRY_JUPYTER_TTL="0", HF_HUB_OFFLINE="1")
        cmd = [sys.executable, "-m", "jupyter_server", f"--config={config}", "--allow-root", "--no-browser"]
        cmd += [
            f"--ServerApp.token={self.token}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.ip=127.0.0.1",
        ]
        cmd += ["--ServerApp.port_retries=0", f"--ServerApp.root_dir={self.workdir}"]
        log = (self.workdir / "server.log").open("wb")
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited; see {self.workdir / 'server.log'}")
            try:
                self.get("api/status", timeout=2)
                self.startup_s = time.perf_counter() - start
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"jupyter server did not answer in {timeout_s} s; see {self.workdir / 'server.log'}"
        )

    def get(self, path: str, timeout: float = 300) -> Any:
        request = urllib.request.Request(self.url + path, headers=self.headers)
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")

    def load(self, model_id: str) -> Any:
        """Load through the Foundry route, so the first timed request does not pay for it."""
        return self.get(f"foundry/openai/load/{model_id}?ttl=0")

    def settle(self, timeout_s: float = 60.0) -> None:
        """Wait until no loaded model is starting another runner process (the server starts them when a
        burst keeps every process of a small model busy)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(m.get("startingProcesses") for m in self.get("foundry/loaded")["models"]):
                return
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()  # the server stops its own runners on SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        # Runners are in the server's process group; any that outlived it go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def import_time(module: str = "foundry_jupyter", runs: int = 7) -> dict[str, float]:
    """Milliseconds `import <module>` takes in a fresh interpreter (timed inside it): min and median."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        times.append(float(done.stdout) * 1000)
    times.sort()
    return {"import_ms_min": times[0], "import_ms_median": times[len(times) // 2]}
