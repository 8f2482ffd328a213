"""`foundry_jupyter.models` imports in one direction: no circle between its modules, no upper layer."""

from __future__ import annotations

import ast
from pathlib import Path

import foundry_jupyter.models as models_package

PACKAGE = "foundry_jupyter.models"
ROOT = Path(models_package.__file__).parent
UPPER_LAYERS = (
    "foundry_jupyter.service",
    "foundry_jupyter.server",
    "foundry_jupyter.runner",
    "foundry_jupyter.kernel",
    "foundry_jupyter.cli",
)
# Imported inside functions on purpose: the converter loads numpy, which `import` of the rest must not.
LAZY_ALLOWED = {"foundry_jupyter.models.gguf", "foundry_jupyter.models.encoders"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module, imported at module level) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    # Imports under `if TYPE_CHECKING:` never run, so they cannot make a circle at import time.
    type_only = {
        id(inner)
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # `from . import pypi` imports the module `pypi`; `from .cache import X` imports `cache`.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.extend((target, id(node) in top_level) for target in targets)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        graph[name] = {target for target, _ in _imports(name, path) if target in MODULES and target != name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_module_list_is_complete() -> None:
    assert {f"{PACKAGE}.manager", f"{PACKAGE}.download", f"{PACKAGE}.pypi", f"{PACKAGE}.progress"} <= set(
        MODULES
    )
    assert f"{PACKAGE}.gguf.importer" in MODULES


def test_no_import_circle_counting_imports_inside_functions() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_circle_finder_sees_a_circle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_gguf_converter_knows_nothing_of_the_cache_or_the_catalog() -> None:
    converter = [n for n in MODULES if n.startswith(f"{PACKAGE}.gguf")]
    allowed = {f"{PACKAGE}.progress"}
    for name in converter:
        outside = {
            t
            for t, _ in _imports(name, MODULES[name])
            if t.startswith(PACKAGE) and not t.startswith(f"{PACKAGE}.gguf") and t not in allowed
        }
        assert not outside, f"{name} imports {sorted(outside)}"


def test_models_import_no_upper_layer_and_each_other_at_module_level() -> None:
    for name, path in MODULES.items():
        for target, at_top in _imports(name, path):
            assert not target.startswith(UPPER_LAYERS), f"{name} imports {target}"
            if target in MODULES and not at_top and not target.startswith(tuple(LAZY_ALLOWED)):
                raise AssertionError(f"{name} imports {target} inside a function")
