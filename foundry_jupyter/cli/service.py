"""`jupyter foundry service status|start|stop|ps` and `jupyter foundry model load|unload`.

The service is any running Jupyter server with this extension: `status` finds them through Jupyter's
runtime files (the same ones `jupyter server list` reads) and asks each for `foundry/openai/status`.
`start` runs `python -m foundry_jupyter.server` (a server with only this extension) in the
background and records it, so that `stop` stops that one and never a user's own JupyterLab.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import FoundryError, error_from_body
from ..units import human_size
from . import add_output_option

PROBE_TIMEOUT_S = 3.0
STATE_FILE = "foundry-service.json"


class ServiceNotRunning(FoundryError):
    code = "service_not_running"


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    service = groups["service"]
    p = service.add_parser("status", help="show whether the service runs, and where")
    add_output_option(p)
    p.set_defaults(func=cmd_status)

    p = service.add_parser("start", help="start the service (a Jupyter server with only this extension)")
    p.add_argument("--port", type=int, default=None, help="port to listen on (default: the first free one)")
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it to answer")
    add_output_option(p)
    p.set_defaults(func=cmd_start)

    p = service.add_parser("stop", help="stop the service started by `service start`")
    p.add_argument("--all", action="store_true", help="stop every Jupyter server that runs the extension")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it to exit")
    p.set_defaults(func=cmd_stop)

    p = service.add_parser("ps", help="list the loaded models with TTL left, memory and provider")
    add_output_option(p)
    p.set_defaults(func=cmd_ps)

    model = groups["model"]
    p = model.add_parser("load", help="load a model into the running service")
    p.add_argument("model", help="alias or full id")
    p.add_argument("--ttl", type=int, default=None, help="idle seconds before it unloads (0: never)")
    p.add_argument("--ep", default=None, help="execution provider (cpu, cuda, dml, ...)")
    add_output_option(p)
    p.set_defaults(func=cmd_load)

    p = model.add_parser("unload", help="unload a model from the running service")
    p.add_argument("model", nargs="?", help="alias or full id (omit with --all)")
    p.add_argument("--all", action="store_true", help="unload every model")
    p.add_argument("--force", action="store_true", help="unload even while it serves requests")
    add_output_option(p)
    p.set_defaults(func=cmd_unload)


# ---- finding the service -------------------------------------------------------------------------
def runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def find_services() -> list[dict[str, Any]]:
    """Running Jupyter servers that answer `foundry/openai/status`, each with `endpoint` added."""
    found = []
    for info in running_servers():
        root = urllib.parse.urljoin(info["url"], "foundry/")
        try:
            status = request(root, info.get("token", ""), "openai/status")
        except (FoundryError, OSError):
            continue
        found.append({**info, "endpoint": root, "status": status})
    return found


def the_service() -> dict[str, Any]:
    """The service to talk to: the one `service start` started if it runs, else the first found."""
    services = find_services()
    if not services:
        raise ServiceNotRunning(
            "The model service is not running. Start it with: jupyter foundry service start"
        )
    recorded = _read_state()
    for svc in services:
        if recorded and svc["pid"] == recorded.get("pid"):
            return svc
    return services[0]


def running_servers() -> list[dict[str, Any]]:
    """The `jpserver-*.json` files of live servers (what `jupyter server list` reads), read without
    importing jupyter_server, which would cost seconds on every command."""
    servers = []
    for path in sorted(runtime_dir().glob("jpserver-*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and "url" in info and _alive(int(info.get("pid", 0))):
            servers.append(info)
    return servers


def request(root: str, token: str, path: str, *, timeout: float = PROBE_TIMEOUT_S) -> Any:
    """GET `root + path` with the token; an error answer becomes a FoundryError with its message."""
    req = urllib.request.Request(
        urllib.parse.urljoin(root, path), headers={"Authorization": f"token {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise error_from_body(exc.code, exc.read(), f"HTTP {exc.code} from {req.full_url}") from None


# ---- commands -----------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    services = find_services()
    if args.output == "json":
        print(json.dumps([_describe(s) for s in services], indent=2))
        return 0 if services else 1
    if not services:
        print("Model management service is not running.")
        print("Start it with: jupyter foundry service start")
        return 1
    for svc in services:
        print(f"Model management service is running on {svc['endpoint']} (pid {svc['pid']})")
        print(f"  OpenAI endpoint: {svc['endpoint']}v1   model cache: {svc['status'].get('modelDirPath')}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    recorded = _read_state()
    for svc in find_services():
        if recorded and svc["pid"] == recorded.get("pid"):
            _print_started(svc, args, already=True)
            return 0
    log_path = runtime_dir() / "foundry-service.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "foundry_jupyter.server", "--no-browser", f"--ip={args.ip}"]
    if args.port is not None:
        cmd += [f"--port={args.port}", "--ServerApp.port_retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FoundryError(
                f"The service exited at start (status {process.returncode}); its log: {log_path}"
            )
        svc = next((s for s in find_services() if s["pid"] == process.pid), None)
        if svc is not None:
            _write_state({"pid": process.pid, "endpoint": svc["endpoint"], "log": str(log_path)})
            _print_started(svc, args, already=False)
            return 0
        time.sleep(0.2)
    process.terminate()
    raise FoundryError(f"The service did not answer within {args.timeout:g} s; its log: {log_path}")


def cmd_stop(args: argparse.Namespace) -> int:
    services = find_services()
    recorded = _read_state()
    if not args.all:
        services = [s for s in services if recorded and s["pid"] == recorded.get("pid")]
    if not services:
        print(
            "Model management service is not running."
            if args.all
            else "No service started by `service start` runs."
        )
        _clear_state()
        return 0
    for svc in services:
        _shutdown(svc, args.timeout)
        print(f"Stopped the service on {svc['endpoint']} (pid {svc['pid']}).")
    _clear_state()
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    svc = the_service()
    models = request(svc["endpoint"], svc.get("token", ""), "loaded")["models"]
    if args.output == "json":
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print("No models are loaded.")
        return 0
    rows = [("Model", "EP", "Memory", "TTL left", "PIDs")]
    for m in models:
        ttl = "never" if m["ttlRemaining"] is None else f"{m['ttlRemaining']:.0f} s"
        pids = ",".join(str(pid) for pid in m.get("pids") or [m["pid"]])
        rows.append((m["id"], m["executionProvider"], human_size(m["memoryBytes"]), ttl, pids))
    _table(rows)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    svc = the_service()
    query = {k: v for k, v in (("ttl", args.ttl), ("ep", args.ep)) if v is not None}
    path = "openai/load/" + urllib.parse.quote(args.model, safe="") + _query(query)
    # loading starts a process and reads the weights: allow it time
    answer = request(svc["endpoint"], svc.get("token", ""), path, timeout=600)
    if args.output == "json":
        print(json.dumps(answer, indent=2))
    else:
        verb = "Loaded" if answer["status"] == "loaded" else "Already loaded:"
        print(f"{verb} {answer['id']} on {answer['executionProvider']}.")
    return 0


def cmd_unload(args: argparse.Namespace) -> int:
    if not args.all and not args.model:
        raise FoundryError("Name the model to unload, or pass --all.")
    svc = the_service()
    if args.all:
        answer = request(svc["endpoint"], svc.get("token", ""), "openai/unloadall", timeout=60)
        text = f"Unloaded {len(answer['models'])} model(s)."
    else:
        path = "openai/unload/" + urllib.parse.quote(args.model, safe="")
        answer = request(
            svc["endpoint"], svc.get("token", ""), path + _query({"force": args.force}), timeout=60
        )
        text = (
            f"Unloaded {answer['id']}."
            if answer["status"] == "unloaded"
            else f"{answer['id']} was not loaded."
        )
    print(json.dumps(answer, indent=2) if args.output == "json" else text)
    return 0


# ---- helpers ----------------------------------------------------------------------------------------
def _shutdown(svc: dict[str, Any], timeout: float) -> None:
    base = svc["url"]
    req = urllib.request.Request(
        urllib.parse.urljoin(base, "api/shutdown"),
        method="POST",
        headers={"Authorization": f"token {svc.get('token', '')}"},
    )
    with contextlib.suppress(urllib.error.URLError, OSError):
        urllib.request.urlopen(req, timeout=PROBE_TIMEOUT_S).close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(svc["pid"]):
        time.sleep(0.1)
    if _alive(svc["pid"]):
        os.kill(svc["pid"], signal.SIGTERM)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(svc: dict[str, Any]) -> dict[str, Any]:
    return {"endpoint": svc["endpoint"], "pid": svc["pid"], "url": svc["url"], **svc["status"]}


def _print_started(svc: dict[str, Any], args: argparse.Namespace, *, already: bool) -> None:
    if args.output == "json":
        print(
            json.dumps({**_describe(svc), "token": svc.get("token", ""), "alreadyRunning": already}, indent=2)
        )
        return
    print(f"Model management service {'is already running' if already else 'started'} on {svc['endpoint']}")
    print(f"  OpenAI base_url: {svc['endpoint']}v1   api_key: the server token ({svc.get('token', '')})")


def _query(params: dict[str, Any]) -> str:
    items = {
        k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items() if v not in (None, False)
    }
    return "?" + urllib.parse.urlencode(items) if items else ""


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _state_path() -> Path:
    return runtime_dir() / STATE_FILE


def _read_state() -> dict[str, Any] | None:
    try:
        return json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return None


def _write_state(state: dict[str, Any]) -> None:
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))


def _clear_state() -> None:
    _state_path().unlink(missing_ok=True)
