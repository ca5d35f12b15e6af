"""The package's layers, read from its source: every import (module level or inside a function)
is an arrow, and the arrows must not form a circle or point from the library into training or
ROS. A newcomer can then read the code bottom-up: model -> inference / objects / referring /
pipeline -> train, ros, cli.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lang_seg_ros"
#: The library: answering a frame or an expression never needs training or ROS.
LIBRARY = ("lang_seg_ros.model", "lang_seg_ros.inference", "lang_seg_ros.objects", "lang_seg_ros.referring",
           "lang_seg_ros.pipeline")
NOT_FROM_LIBRARY = ("lang_seg_ros.train", "lang_seg_ros.ros")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package's own module an import names (`a.b.c` -> `a.b.c`, or `a.b` when c is a name in it)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (absolute and relative, at any depth of the file)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                prefix = (base + "." + node.module if node.module else base) if node.level else node.module
                targets = [f"{prefix}.{a.name}" for a in node.names]
            for target in targets:
                resolved = _resolve(target, modules) if target.startswith("lang_seg_ros") else None
                if resolved and resolved != module:
                    graph[module].add(resolved)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _is_package_init(module: str, other: str) -> bool:
    """`a.b` importing its own submodule `a.b.c` (a package re-exporting its parts), or `a.b.c`
    importing a sibling through `a.b`: Python loads the package first either way."""
    return other.startswith(module + ".") or module.startswith(other + ".")


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    # A package's __init__ and its own submodules are one unit; circles between units are bugs.
    units = {m: {o for o in deps if not _is_package_init(m, o)} for m, deps in graph.items()}
    assert _cycles(units) == []


def test_the_library_never_imports_training_or_ros():
    arrows = sorted((m, o) for m, deps in import_graph().items() for o in deps
                    if m.startswith(LIBRARY) and o.startswith(NOT_FROM_LIBRARY))
    assert arrows == []


def test_no_module_is_an_alias_of_another():
    aliases = [m for m, p in _modules().items() if "sys.modules[__name__]" in p.read_text()]
    assert aliases == []


def test_the_graph_sees_function_level_and_relative_imports():
    """The reader itself: a deferred relative import is an arrow like any other."""
    graph = import_graph()
    assert "lang_seg_ros.train.commands" in graph["lang_seg_ros.cli"]  # imported inside build_parser
    assert "lang_seg_ros.inference.preprocess" in graph["lang_seg_ros.referring.lts_referrer"]


@pytest.mark.parametrize("module, limit", [("lang_seg_ros.ros.node", 400)])
def test_the_node_stays_wiring(module, limit):
    lines = _modules()[module].read_text().count("\n")
    assert lines < limit, f"{module} has {lines} lines: message building and scheduling belong in their own modules"
