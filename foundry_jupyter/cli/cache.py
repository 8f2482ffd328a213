"""`jupyter foundry cache list|location|remove|cd`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..units import human_size
from . import add_output_option
from .model import manager
from .output import print_json, print_table, wants_json


def register(groups: dict[str, Any]) -> None:
    cache = groups["cache"]

    p = cache.add_parser("list", aliases=["ls"], help="list the models in the cache")
    add_output_option(p)
    p.set_defaults(func=cmd_list)

    p = cache.add_parser("location", help="show where the cache is")
    add_output_option(p)
    p.set_defaults(func=cmd_location)

    p = cache.add_parser(
        "remove", aliases=["rm"], help="delete a model from the cache (or forget a registration)"
    )
    p.add_argument("model", help="alias or model id")
    add_output_option(p)
    p.set_defaults(func=cmd_remove)

    p = cache.add_parser("cd", help="move the cache, with its models, to another folder")
    p.add_argument("path", help="the new cache folder (absent or empty)")
    add_output_option(p)
    p.set_defaults(func=cmd_cd)


def cmd_list(args: argparse.Namespace) -> int:
    from ..models import view

    m = manager()
    if wants_json(args):
        print_json(view.cache_listing(m))
        return 0
    models = m.list_cached()
    if not models:
        print(f"No models in the cache at {m.cache.root}.")
        return 0
    rows = [
        [
            c.alias,
            c.id,
            c.device,
            c.execution_provider.removesuffix("ExecutionProvider"),
            human_size(c.size_bytes),
            c.last_used.strftime("%Y-%m-%d %H:%M") if c.last_used else "",
            f"{c.path}{'  (registered)' if c.registered else ''}",
        ]
        for c in models
    ]
    print_table(["Alias", "Model ID", "Device", "EP", "Size", "Last used", "Path"], rows)
    return 0


def cmd_location(args: argparse.Namespace) -> int:
    root = manager().cache.root
    if wants_json(args):
        print_json({"location": str(root)})
    else:
        print(root)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    removed = manager().remove(args.model)
    if wants_json(args):
        print_json({"removed": removed.id, **removed.to_dict()})
    elif removed.registered:
        print(
            f"Forgot the registration {removed.alias} ({removed.id}); the folder {removed.path} is untouched."
        )
    else:
        print(f"Removed {removed.id} ({human_size(removed.size_bytes)}) from {removed.path}")
    return 0


def cmd_cd(args: argparse.Namespace) -> int:
    from ..config import ENV_CACHE
    from ..models.location import is_default

    m = manager()
    old = m.cache.root
    count = len(m.cache.scan())
    new = m.move_cache(args.path)
    remembered = is_default(m.settings)
    if wants_json(args):
        print_json({"location": str(new), "previous": str(old), "models": count, "remembered": remembered})
    else:
        print(f"Moved the cache ({count} model{'s' if count != 1 else ''}) from {old} to {new}")
    if not remembered and not wants_json(args):
        where = f"{ENV_CACHE}={os.environ[ENV_CACHE]}" if os.environ.get(ENV_CACHE) else "your configuration"
        print(f"Note: {where} sets the cache location; change it to {new} to keep using it.", file=sys.stderr)
    return 0
