"""Foundry Local's own runtime (foundry-local-sdk) as the peer, in its own virtual environment.

The SDK pins onnxruntime 1.31 and onnxruntime-genai-core 0.18, which conflict with ours, so it lives in
a separate venv (default `benchmarks/out/peer-venv`, override with FOUNDRY_BENCH_PEER_VENV). This file
is both the driver (imported by the benchmark, stdlib only) and the peer's entry point (run by the venv's
python: `peer.py serve ...`). Facts followed here were measured: a closed loopback catalog URL keeps it
offline, locally registered models are served under /catalogs/local/v1, and the process is killed to
stop it (POST /shutdown makes a later stop_web_service() hang).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import subprocess
import sys
import urllib.request
from pathlib import Path

SDK_REQUIREMENT = "foundry-local-sdk==2.2.1"
DEFAULT_VENV = Path(__file__).resolve().parent / "out" / "peer-venv"
CLOSED_CATALOG = "http://127.0.0.1:9/asset-gallery/v1.0/models"  # port 9 (discard): refused at once


def venv_dir() -> Path:
    return Path(os.environ.get("FOUNDRY_BENCH_PEER_VENV") or DEFAULT_VENV)


def venv_python(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "python"


def peer_available(venv: Path | None = None) -> str | None:
    """None when the peer can run, else the reason it cannot."""
    python = venv_python(venv)
    if not python.exists():
        return f"no peer venv at {python.parent.parent} (build it: python -m benchmarks.peer setup, ~40 s)"
    probe = subprocess.run(
        [str(python), "-c", "import foundry_local_sdk"], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        return f"foundry_local_sdk does not import in {python}: {probe.stderr.strip()[-200:]}"
    return None


def setup(venv: Path | None = None) -> Path:
    """Create the peer venv and install the SDK into it (about 40 s from the registry)."""
    venv = venv or venv_dir()
    if not venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv_python(venv)),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            SDK_REQUIREMENT,
        ],
        check=True,
    )
    return venv


class PeerProcess:
    """One peer web service serving one model folder, on 127.0.0.1:`port`."""

    def __init__(self, model_dir: Path, model_id: str, port: int, workdir: Path) -> None:
        self.model_dir = model_dir
        self.model_id = model_id
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of a locally registered model."""
        return f"http://127.0.0.1:{self.port}/catalogs/local/v1"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 120.0) -> PeerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [str(venv_python()), str(Path(__file__).resolve()), "serve", "--model-dir", str(self.model_dir)]
        cmd += ["--model-id", self.model_id, "--port", str(self.port), "--workdir", str(self.workdir)]
        log = (self.workdir / "peer.stderr").open("w")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
        )
        assert self.proc.stdout is not None
        # The child prints exactly one JSON line when the model is loaded and served.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"peer did not start in {timeout_s} s; see {self.workdir / 'peer.stderr'}")
        self.info = json.loads(line)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def __enter__(self) -> PeerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _serve(args: argparse.Namespace) -> None:
    """Runs inside the peer venv: register the folder, serve it, load it, report, wait to be killed."""
    from foundry_local_sdk import (
        CatalogType,
        Configuration,
        FoundryLocalManager,
        ModelInfoBuilder,
        __version__,
    )

    work = Path(args.workdir)
    config = Configuration(
        app_name="foundry-jupyter-bench",
        model_cache_dir=str(work / "cache"),
        logs_dir=str(work / "logs"),
        web=Configuration.WebService(urls=f"http://127.0.0.1:{args.port}"),
        catalog_urls=[(CLOSED_CATALOG, None)],
    )
    FoundryLocalManager.initialize(config)
    manager = FoundryLocalManager.instance
    assert manager is not None
    catalog = manager.get_catalog(CatalogType.LOCAL)
    # Registrations persist in the cache folder and a second one of the same id fails.
    with contextlib.suppress(Exception):
        catalog.unregister_model(args.model_id)
    metadata = ModelInfoBuilder().set_string_property("task", "chat-completion")
    model = catalog.register_model(model_path=args.model_dir, model_id=args.model_id, metadata=metadata)
    manager.start_web_service()
    root = f"http://127.0.0.1:{args.port}/catalogs/local"
    with urllib.request.urlopen(f"{root}/models/load/{model.alias}", timeout=300) as resp:
        resp.read()
    print(json.dumps({"version": __version__, "alias": model.alias, "model": args.model_id}), flush=True)
    sys.stdin.read()  # the driver kills us; a vanished driver closes stdin
    os._exit(0)  # skip the SDK's atexit teardown, which can hang after the web service ran


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.peer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create the peer venv and install foundry-local-sdk into it")
    serve = sub.add_parser("serve", help="(inside the peer venv) serve one model folder")
    serve.add_argument("--model-dir", required=True)
    serve.add_argument("--model-id", required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    if args.command == "setup":
        print(setup())
    else:
        _serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
