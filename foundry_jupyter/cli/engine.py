"""`jupyter foundry engine add|list|remove`: remote OpenAI-compatible engines in engines.json.

A running server re-reads the file on its next request, so an engine added here is served at once.
Keys are never written: `--api-key-env` names the environment variable the server reads the key from.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..config import defaults
from ..models import view
from ..models.engines import EngineFile, EngineListing, check_new_aliases, fetch_listings, parse_engine
from . import add_output_option
from .output import print_json, print_table, wants_json


def register(groups: dict[str, Any]) -> None:
    engine = groups["engine"]

    p = engine.add_parser("add", help="add (or replace) a remote OpenAI-compatible engine")
    p.add_argument("name", help="the engine's name: its models are served as NAME/MODEL")
    p.add_argument("--base-url", required=True, help="its OpenAI root, e.g. http://gpu1:8000/v1")
    p.add_argument("--api-key-env", help="the environment variable holding its API key (on the server)")
    p.add_argument("--models", help="comma-separated model ids (default: the engine's GET /v1/models)")
    p.add_argument(
        "--alias",
        action="append",
        metavar="ALIAS=MODEL",
        help="a short name for one of its models (repeatable), e.g. llama=meta-llama/Llama-3.1-8B-Instruct",
    )
    p.add_argument("--max-in-flight", type=int, help="at most this many requests at once (default 16)")
    add_output_option(p)
    p.set_defaults(func=cmd_add)

    p = engine.add_parser("list", aliases=["ls"], help="list the engines with their health and models")
    p.add_argument("--no-check", action="store_true", help="do not ask the engines (no health, no models)")
    add_output_option(p)
    p.set_defaults(func=cmd_list)

    p = engine.add_parser("remove", aliases=["rm"], help="forget an engine")
    p.add_argument("name")
    add_output_option(p)
    p.set_defaults(func=cmd_remove)


def engine_file() -> EngineFile:
    return EngineFile(defaults().engines_file)


def cmd_add(args: argparse.Namespace) -> int:
    data: dict[str, Any] = {"name": args.name, "base_url": args.base_url}
    if args.api_key_env:
        data["api_key_env"] = args.api_key_env
    if args.models:
        data["models"] = args.models
    if args.alias:
        data["aliases"] = args.alias
    if args.max_in_flight is not None:
        data["max_in_flight"] = args.max_in_flight
    engine = parse_engine(data, source="engine add")
    if engine.aliases:
        check_new_aliases(engine, engine_file().load(), _is_local)
    engine = engine_file().add(engine)
    if wants_json(args):
        print_json(engine.public())
    else:
        print(
            f"Added engine '{engine.name}' at {engine.public()['baseUrl']}; its models: {engine.name}/MODEL."
        )
    return 0


def _is_local(name: str) -> bool:
    from ..errors import FoundryError, ModelNotFound
    from ..models.manager import ModelManager

    try:
        ModelManager(defaults()).resolve(name)
    except ModelNotFound:
        return False
    except FoundryError:
        return True  # known here, but not usable as asked
    return True


def cmd_list(args: argparse.Namespace) -> int:
    engines = engine_file().load()
    if args.no_check:
        listings = [EngineListing(e.name, [{"id": m} for m in e.models]) for e in engines]
    else:
        listings = fetch_listings(engines)
    rows = [
        view.engine_row(e, listing) | {"models": listing.model_ids()}
        for e, listing in zip(engines, listings, strict=True)
    ]
    if wants_json(args):
        print_json({"file": str(engine_file().path), "engines": rows})
        return 0
    if not rows:
        print(f"No engines in {engine_file().path}. Add one: jupyter foundry engine add NAME --base-url URL")
        return 0
    print_table(
        ["NAME", "BASE URL", "KEY", "HEALTH", "LATENCY", "MODELS"],
        [
            [
                r["name"],
                r["baseUrl"],
                f"${r['apiKeyEnv']}" + ("" if r["hasKey"] else " (unset)") if r["apiKeyEnv"] else "",
                r["health"],
                f"{r['latencyMs']:.0f} ms" if r["latencyMs"] is not None else "",
                ", ".join(_with_alias(m, r["aliases"]) for m in r["models"]),
            ]
            for r in rows
        ],
    )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    removed = engine_file().remove(args.name)
    if wants_json(args):
        print_json({"removed": removed.name})
    else:
        print(f"Removed engine '{removed.name}'.")
    return 0


def _with_alias(model: str, aliases: dict[str, str]) -> str:
    alias = next((a for a, m in aliases.items() if m == model), None)
    return f"{model} ({alias})" if alias else model
