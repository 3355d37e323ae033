"""The house plan holds: layers only import downwards, no import circles, no private names.

The layers, lowest first: the shared basics (``errors``, ``item``, ``codecs``,
``_checks``), ``engine/``, ``sharing/``, ``structures/``, ``tasks/``, and on top the
entry points and optional parts (``aio/``, ``cli/``, ``contrib/``, ``metrics/``,
``web/``, ``demo``). Every import in the package is read with :mod:`ast`, including
those inside functions and under ``TYPE_CHECKING``: a circle that only typing closes
is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import diskqueue

PACKAGE = Path(diskqueue.__file__).parent

# Lower numbers are lower layers; a module may import its own layer and lower ones.
LAYERS = {
    "errors": 0, "item": 0, "codecs": 0, "_checks": 0, "_version": 0,
    "engine": 1,
    "sharing": 2,
    "structures": 3,
    "tasks": 4,
    "aio": 5,
    "metrics": 6, "web": 6, "contrib": 6,
    "cli": 7, "demo": 7, "__main__": 8, "__init__": 8,
}


# Upward imports made on purpose, each loaded lazily and only when asked for.
ALLOWED_UPWARD = {
    ("diskqueue.tasks.taskqueue", "diskqueue.metrics.server"):
        "tasks.start(metrics_port=N) loads the optional metrics package when given a port",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def layer(name: str) -> int:
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    assert top in LAYERS, f"{name}: place this module in a layer of tests/test_layers.py"
    return LAYERS[top]


def absolute(current: str, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = current.split(".") if is_package(current) else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports(name: str) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for each import in ``name``."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            target = absolute(name, node.level, node.module)
            names = [alias.name for alias in node.names]
            found.append((target, names, node.lineno))
    return found


def edges(name: str) -> list[tuple[str, int]]:
    """Modules of this package that ``name`` depends on, with the line of the import."""
    out = []
    for target, names, line in imports(name):
        if not target.startswith("diskqueue"):
            continue
        submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
        if submodules:
            out += [(sub, line) for sub in submodules]
            if len(submodules) == len(names):
                continue
        if target in MODULES:
            out.append((target, line))
    return out


GRAPH = {name: [(target, line) for target, line in edges(name)
                if (name, target) not in ALLOWED_UPWARD]
         for name in MODULES}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_upward_import(name: str) -> None:
    upward = [f"line {line}: {target}" for target, line in GRAPH[name]
              if layer(target) > layer(name) and not name.startswith(target + ".")]
    assert not upward, f"{name} imports from a higher layer: {upward}"


def test_no_import_circles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target, _ in GRAPH[node]:
            if target == node or is_package(target) and node.startswith(target + "."):
                continue  # a package's __init__ re-exporting its own modules is no circle
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(MODULES):
        if name not in index:
            visit(name)
    assert not circles, f"import circles: {circles}"


def private_uses(name: str) -> list[str]:
    """Private names of other modules that ``name`` imports or reaches through a module."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    found = []
    module_aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        target = absolute(name, node.level, node.module)
        if not target.startswith("diskqueue"):
            continue
        own_private = target.split(".")[-1].startswith("_")  # a `_`-module meant for sharing
        for alias in node.names:
            full = f"{target}.{alias.name}"
            if full in MODULES:
                module_aliases[alias.asname or alias.name] = full
            elif (alias.name.startswith("_") and not alias.name.startswith("__")
                  and not own_private and target != name):
                found.append(f"line {node.lineno}: from {target} import {alias.name}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_imports(name: str) -> None:
    assert not private_uses(name), f"{name} uses private names of other modules"


def test_every_allowed_upward_import_is_still_there() -> None:
    for name, target in ALLOWED_UPWARD:
        assert target in [t for t, _ in edges(name)], f"drop {name} -> {target} from the list"


def test_the_checks_see_imports() -> None:
    """The walk finds real edges (a walk that found none would pass everything)."""
    assert ("diskqueue.engine.store", ) == tuple(
        t for t, _ in GRAPH["diskqueue.engine.repair"] if t == "diskqueue.engine.store")
    assert layer("diskqueue.cli.admin") > layer("diskqueue.tasks.taskqueue") > layer(
        "diskqueue.engine.store")
