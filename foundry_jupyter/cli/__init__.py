"""`jupyter foundry ...`: the command line, mirroring Foundry Local's `foundry` CLI.

Each module of this package adds its own subcommands through `register(groups)`; a command is a
function `(args) -> int`. Errors a person can act on print one line and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ..errors import FoundryError

# Modules that contribute commands, in the order their help appears.
COMMAND_MODULES = ("model", "cache", "service", "engine", "hardware", "convert", "ziplogs")

GROUPS = {
    "model": "discover, download, run and manage models",
    "cache": "manage the local model cache",
    "service": "manage the model service (a Jupyter server with this extension)",
    "engine": "remote OpenAI-compatible engines whose models are served as ENGINE/MODEL",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter foundry", description="Local LLM inference for Jupyter on ONNX Runtime GenAI."
    )
    parser.add_argument("--version", action="version", version=_version())
    top = parser.add_subparsers(dest="group", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {"": top}
    for name, help_text in GROUPS.items():
        group_parser = top.add_parser(name, help=help_text, description=help_text)
        groups[name] = group_parser.add_subparsers(dest="command", metavar="COMMAND")
        group_parser.set_defaults(func=_usage(group_parser))
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{module_name}").register(groups)
    parser.set_defaults(func=_usage(parser))
    return parser


def add_output_option(parser: argparse.ArgumentParser) -> None:
    """`--output json|table`, which every command takes."""
    parser.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="output format (default: table)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FoundryError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `... | head`: the reader left, which is no error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit must not fail again
        return 141
    except OSError as exc:  # a disk full, a folder we may not write: still one line, not a traceback
        print(f"Error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def _usage(parser: argparse.ArgumentParser):
    def show(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def _version() -> str:
    from .. import __version__

    return f"foundry-jupyter {__version__}"


if __name__ == "__main__":
    sys.exit(main())
