"""The house's rooms and arrows (docs/architecture.md), checked from the code's own imports:
each room imports only the rooms below it, and no module imports itself back through others.
Imports under ``if TYPE_CHECKING:`` are annotations, not arrows, and are left out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: room → the rooms it may import (itself included)
ALLOWED: dict[str, set[str]] = {
    "domain": {"domain"},
    "connectors": {"connectors", "domain"},
    "activities": {"activities", "connectors", "domain"},
    "workflows": {"workflows", "activities", "domain"},
    "infra": {"infra", "domain"},
    "workers": {"workers", "workflows", "activities", "connectors", "domain", "infra"},
    "webhooks": {"webhooks", "domain", "infra"},
    "harness": {"harness", "sandbox", "connectors", "domain"},
    "sandbox": {"sandbox"},
}
ROOMS = set(ALLOWED) | {"cli", "bench"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Our modules imported by ``path`` (at any depth, TYPE_CHECKING blocks excluded; relative
    imports resolved against the module's package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package[: len(package) - child.level + 1] if child.level else []
                module = ".".join([*base, *([child.module] if child.module else [])])
                # "from pkg import mod" names a module; "from mod import name" a name in it
                found.update(f"{module}.{a.name}" for a in child.names)
            walk(child)

    walk(tree)
    return {m for m in found if m.split(".")[0] in ROOMS}


def _graph() -> dict[str, set[str]]:
    files = [p for room in ROOMS for p in (ROOT / room).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            # "from a.b import c": c is a module or a name in a.b
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def test_each_room_imports_only_the_rooms_below_it() -> None:
    wrong = sorted(
        f"{module} → {target}"
        for module, targets in _graph().items()
        for target in targets
        if (room := module.split(".")[0]) in ALLOWED and target.split(".")[0] not in ALLOWED[room]
    )
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert cycles == []
