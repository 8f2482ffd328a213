"""No module calls a POSIX-only function, or imports a POSIX-only module, without a guard: the server,
the runners and the kernel side must at least import and run on Windows.

Guarded means: inside an `if` on the platform (`sys.platform`, `os.name`, `hasattr`,
`unix_sockets_available()`), or inside a `try` whose handler catches what the other platforms raise
(ImportError, AttributeError, NotImplementedError, OSError), or in a function listed below with the
reason only POSIX reaches it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import foundry_jupyter

ROOT = Path(foundry_jupyter.__file__).parent

POSIX_MODULES = {"fcntl", "termios", "resource", "pwd", "grp", "pty", "tty", "posix", "crypt", "syslog"}
POSIX_ATTRIBUTES = {
    "os": {
        "killpg",
        "getpgid",
        "setsid",
        "setpgrp",
        "nice",
        "fork",
        "forkpty",
        "getuid",
        "geteuid",
        "getgid",
        "setuid",
        "chown",
        "mkfifo",
        "sysconf",
        "statvfs",
        "uname",
        "getloadavg",
        "sched_getaffinity",
        "sched_setaffinity",
        "WNOHANG",
        "getpriority",
        "setpriority",
    },
    "signal": {
        "SIGKILL",
        "SIGHUP",
        "SIGQUIT",
        "SIGUSR1",
        "SIGUSR2",
        "SIGCHLD",
        "SIGALRM",
        "SIGPIPE",
        "alarm",
        "setitimer",
        "pthread_kill",
        "pthread_sigmask",
    },
    "socket": {"AF_UNIX", "SO_REUSEPORT"},
    "asyncio": {"start_unix_server", "open_unix_connection"},
}
# Method names that exist only on POSIX, whatever the object (the event loop's signal handlers).
POSIX_METHODS = {
    "add_signal_handler",
    "remove_signal_handler",
    "create_unix_server",
    "create_unix_connection",
}
POSIX_PATHS = ("/proc/", "/tmp", "/dev/shm", "/sys/")
GUARD_WORDS = ("sys.platform", "os.name", "hasattr(", "platform.system", "unix_sockets_available")
GUARD_ERRORS = {"ImportError", "ModuleNotFoundError", "AttributeError", "NotImplementedError", "OSError"}
# "module:function" -> why only POSIX reaches it
POSIX_ONLY_FUNCTIONS = {
    "foundry_jupyter.service.transport:Address.connect": "kind 'unix' only where choose() allows it",
    "foundry_jupyter.service.transport:serve_unix": "called for --socket, which only 'unix' passes",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST], source: str, module: str) -> bool:
    names: list[str] = []
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.If | ast.IfExp | ast.While) and child is not parent.test:
            test = ast.get_source_segment(source, parent.test) or ""
            if any(word in test for word in GUARD_WORDS):
                return True
        if isinstance(parent, ast.BoolOp) and isinstance(parent.op, ast.And):
            before = parent.values[: parent.values.index(child)] if child in parent.values else []
            if any(word in (ast.get_source_segment(source, v) or "") for v in before for word in GUARD_WORDS):
                return True  # `hasattr(os, "geteuid") and os.geteuid() == 0`
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                caught = ast.get_source_segment(source, handler.type) if handler.type else "BaseException"
                if any(error in (caught or "") for error in GUARD_ERRORS | {"Exception"}):
                    return True
        if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(parent.name)
        child, parent = parent, parents.get(parent)
    qualified = ".".join(reversed(names))
    return f"{module}:{qualified}" in POSIX_ONLY_FUNCTIONS


def unguarded(source: str, module: str = "sample") -> list[str]:
    """Each POSIX-only use in `source` outside a guard, as 'line: what'."""
    tree = ast.parse(source)
    parents = _parents(tree)
    found = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Import):
            hits = [a.name for a in node.names if a.name.split(".")[0] in POSIX_MODULES]
            what = f"import {hits[0]}" if hits else None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in POSIX_MODULES:
                what = f"from {node.module} import ..."
            elif node.module in POSIX_ATTRIBUTES:
                hits = [a.name for a in node.names if a.name in POSIX_ATTRIBUTES[node.module]]
                what = f"from {node.module} import {hits[0]}" if hits else None
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.attr in POSIX_ATTRIBUTES.get(node.value.id, ()):
                what = f"{node.value.id}.{node.attr}"
            elif node.attr in POSIX_METHODS:
                what = f".{node.attr}"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(POSIX_PATHS)
        ):
            what = repr(node.value)
        if what and not _guarded(node, parents, source, module):
            found.append(f"{node.lineno}: {what}")
    return found


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_unguarded_posix_only_call(module):
    path = MODULES[module]
    assert unguarded(path.read_text(encoding="utf-8"), module) == []


def test_the_check_sees_unguarded_calls_and_accepts_guarded_ones():
    bad = "import fcntl\nimport os, signal\nos.nice(3)\nos.kill(1, signal.SIGKILL)\nopen('/proc/cpuinfo')\n"
    assert [hit.split(": ")[1] for hit in unguarded(bad)] == [
        "import fcntl",
        "os.nice",
        "signal.SIGKILL",
        "'/proc/cpuinfo'",
    ]
    good = (
        "import sys, os\n"
        "if sys.platform != 'win32':\n    import fcntl\n    os.nice(3)\n"
        "try:\n    open('/proc/cpuinfo')\nexcept OSError:\n    pass\n"
        "x = os.getuid() if hasattr(os, 'getuid') else 0\n"
    )
    assert unguarded(good) == []
    # the guard must hold the call, not only sit beside it
    assert unguarded("import sys, os\nif sys.platform == 'linux':\n    pass\nos.nice(1)\n") == ["4: os.nice"]
