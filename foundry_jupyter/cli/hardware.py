"""`jupyter foundry hardware`: CPU, memory, GPUs and the execution providers this machine can use."""

from __future__ import annotations

import argparse
from typing import Any

from . import add_output_option
from .output import print_json, wants_json


def register(groups: dict[str, Any]) -> None:
    p = groups[""].add_parser("hardware", help="show the hardware and execution providers")
    add_output_option(p)
    p.set_defaults(func=cmd_hardware)


def cmd_hardware(args: argparse.Namespace) -> int:
    from ..engine.hardware import hardware_report

    report = hardware_report()
    if wants_json(args):
        print_json(report.to_dict())
    else:
        print(report)
    return 0
