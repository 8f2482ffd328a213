"""`jupyter foundry zip-logs`: a diagnostics zip to attach to a bug report, as `foundry zip-logs` makes.

Logs, the hardware report, versions, the catalog and cache listings and what the running services
report, with tokens and keys removed (`service.diagnostics`).
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path
from typing import Any

from . import add_output_option
from .output import print_json, wants_json


def register(groups: dict[str, Any]) -> None:
    p = groups[""].add_parser(
        "zip-logs",
        help="collect logs, hardware, versions, catalog and cache into a zip (tokens and keys removed)",
        description="Write a diagnostics zip: the service and runner logs, the hardware report, package "
        "versions, the catalog and cache listings and the running services' state, with tokens, keys and "
        "passwords replaced by [redacted].",
    )
    p.add_argument(
        "--out", default=None, metavar="PATH", help="the zip to write (default: foundry-logs-<time>.zip here)"
    )
    add_output_option(p)
    p.set_defaults(func=cmd_zip_logs)


def cmd_zip_logs(args: argparse.Namespace) -> int:
    from ..service.diagnostics import build_bundle, bundle_name
    from .model import manager

    target = Path(args.out).expanduser() if args.out else Path.cwd() / bundle_name()
    services, tokens = _services()
    data = build_bundle(manager(), extra={"services.json": services}, secrets=tokens)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
    if wants_json(args):
        print_json({"path": str(target), "sizeBytes": len(data), "files": names})
    else:
        print(
            f"Wrote {target} ({len(names)} files). Tokens and keys are removed; look it over before sharing."
        )
    return 0


def _services() -> tuple[list[dict[str, Any]], list[str]]:
    """What each running service reports (status and loaded models), and their tokens to hide."""
    from ..errors import FoundryError
    from .service import find_services, request

    described, tokens = [], []
    for svc in find_services():
        token = str(svc.get("token") or "")
        tokens.append(token)
        entry = {k: v for k, v in svc.items() if k != "token"}
        try:
            entry["loaded"] = request(svc["endpoint"], token, "loaded")
        except (FoundryError, OSError) as exc:
            entry["loaded"] = {"error": str(exc)}
        described.append(entry)
    return described, tokens
