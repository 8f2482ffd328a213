"""The kernel side talks to the server only over HTTP: no kernel module imports server or service code."""

from __future__ import annotations

import ast
from pathlib import Path

import foundry_jupyter.kernel as kernel_package

FORBIDDEN = (
    "foundry_jupyter.server",
    "foundry_jupyter.service",
    "foundry_jupyter.runner",
    "foundry_jupyter.cli",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against foundry_jupyter.kernel
                base = ["foundry_jupyter", "kernel"][: 2 - (node.level - 1)]
                names.add(".".join([*base, *([node.module] if node.module else [])]))
            else:
                names.add(node.module or "")
    return names


def test_kernel_modules_import_no_server_side_code() -> None:
    folder = Path(kernel_package.__file__).parent
    files = sorted(folder.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        bad = [n for n in _imports(path) if n.startswith(FORBIDDEN)]
        assert not bad, f"{path.name} imports {bad}"
