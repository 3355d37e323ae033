"""Every public definition in the package has a docstring.

Public means: a class or function whose name does not start with ``_``, in a module whose
dotted path has no part starting with ``_`` (``__init__`` aside); the public methods and
nested classes of any class there (a private base class's methods are public ones of the
classes that inherit them); and the dunder methods users reach through syntax
(``len(q)``, ``for x in q``, ``with q:``), which ``help()`` shows beside the others. The
source is read with :mod:`ast`, so nothing is imported and optional extras need not be
installed. The API reference (docs/reference.md) is rendered from these docstrings.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import diskqueue

PACKAGE = Path(diskqueue.__file__).parent

# Dunder methods that are part of what a user calls, through syntax or a builtin.
USER_DUNDERS = frozenset({
    "__len__", "__iter__", "__next__", "__reversed__", "__contains__", "__bool__",
    "__getitem__", "__setitem__", "__delitem__", "__call__",
    "__enter__", "__exit__", "__aenter__", "__aexit__", "__aiter__", "__anext__",
})

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def public_module(path: Path) -> bool:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return not any(part.startswith("_") and part != "__init__" for part in parts)


def public_name(name: str, in_class: bool) -> bool:
    if in_class and name in USER_DUNDERS:
        return True
    return not name.startswith("_")


def is_accessor_or_overload(node: Definition) -> bool:
    """A property's setter/deleter and ``@overload`` stubs share the main definition's doc."""
    for decorator in getattr(node, "decorator_list", []):
        if isinstance(decorator, ast.Attribute) and decorator.attr in ("setter", "deleter"):
            return True
        name = decorator.attr if isinstance(decorator, ast.Attribute) else getattr(
            decorator, "id", None)
        if name == "overload":
            return True
    return False


def definitions(body: list[ast.stmt], in_class: bool) -> Iterator[Definition]:
    """The definitions a body makes at its own level, including under ``if``/``try``."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node
        elif isinstance(node, ast.If):
            yield from definitions(node.body + node.orelse, in_class)
        elif isinstance(node, ast.Try):
            handlers = [stmt for handler in node.handlers for stmt in handler.body]
            yield from definitions(
                node.body + handlers + node.orelse + node.finalbody, in_class)


def undocumented(
    body: list[ast.stmt], path: str, in_class: bool, owner: str = ""
) -> Iterator[str]:
    """``path:line qualified.name`` of each public definition in ``body`` without a docstring."""
    for node in definitions(body, in_class):
        if is_accessor_or_overload(node):
            continue
        name = f"{owner}{node.name}"
        if public_name(node.name, in_class) and ast.get_docstring(node) is None:
            yield f"{path}:{node.lineno} {name}"
        if isinstance(node, ast.ClassDef):
            # A private class's public methods are a public class's once it inherits
            # them (Queue's peek is _Line's), so they are checked too.
            yield from undocumented(node.body, path, in_class=True, owner=f"{name}.")


def missing_docstrings() -> list[str]:
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if not public_module(path):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        where = path.relative_to(PACKAGE.parent).as_posix()
        missing.extend(undocumented(tree.body, where, in_class=False))
    return missing


def test_every_public_definition_has_a_docstring() -> None:
    missing = missing_docstrings()
    assert not missing, (
        f"{len(missing)} public definitions have no docstring (say what it does and "
        "what it raises):\n  " + "\n  ".join(missing))


def test_the_walk_sees_what_it_should() -> None:
    """The walk is not vacuous: it reaches methods (a private base's too), user dunders
    and guarded definitions, and skips private names, other dunders and setters."""
    source = '''
class Public:
    """Doc."""
    def method(self): pass
    def __len__(self): pass
    def __repr__(self): pass
    def _private(self): pass
    @property
    def size(self):
        """Doc."""
    @size.setter
    def size(self, value): pass
class _Hidden:
    def method(self): pass
try:
    def guarded(): pass
except ImportError:
    pass
'''
    found = list(undocumented(ast.parse(source).body, "m.py", in_class=False))
    assert found == ["m.py:4 Public.method", "m.py:5 Public.__len__",
                     "m.py:14 _Hidden.method", "m.py:16 guarded"]


REFERENCE = PACKAGE.parent / "docs" / "reference.md"


def rendered() -> set[str]:
    """The identifiers docs/reference.md renders (``::: diskqueue.Queue`` lines)."""
    text = REFERENCE.read_text(encoding="utf-8")
    return {line.split()[1] for line in text.splitlines() if line.startswith("::: ")}


def test_the_reference_renders_every_public_name() -> None:
    """Each name of ``diskqueue.__all__`` and ``diskqueue.tasks.__all__`` is rendered:
    itself, or the whole module that defines it (the errors)."""
    import diskqueue.tasks

    shown = rendered()
    packages = (diskqueue, diskqueue.tasks)
    missing = []
    for package in packages:
        for name in package.__all__:
            if name == "__version__":
                continue
            module = getattr(getattr(package, name), "__module__", "")
            ways = {module} | {f"{where.__name__}.{name}" for where in packages}
            if not ways & shown:
                missing.append(f"{package.__name__}.{name}")
    assert not missing, f"docs/reference.md does not render: {', '.join(missing)}"
    assert "diskqueue.engine.api" in shown  # EngineAPI, for contributors
