"""Render the reST roles of our docstrings (``:class:`Queue```) in the API reference.

The docstrings are written for ``help()`` and editors, which read reST roles; Markdown
would print them as they are. Each role becomes its name in code, linked to the object's
entry when the reference renders that object, and left unlinked otherwise (a standard
library name, or a private helper), so ``mkdocs build --strict`` never meets a link it
cannot resolve. A ``mode=`` default is shown in octal, as written (``0o700``, not 448).
Loaded by mkdocstrings as a Griffe extension (see mkdocs.yml).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|mod|attr|exc|data|obj|const):`(?P<tilde>~?)(?P<name>[^`]+)`")


def _target(obj: griffe.Object, name: str) -> str:
    """The full dotted path ``name`` stands for, seen from ``obj``'s scope."""
    if name.startswith("."):  # relative to the module, as Sphinx reads ``.taskqueue``
        module = obj if isinstance(obj, griffe.Module) else obj.module
        base = module.path if module.is_package else module.path.rpartition(".")[0]
        return f"{base}.{name.lstrip('.')}"
    first, _, rest = name.partition(".")
    try:
        resolved = obj.resolve(first)
    except (griffe.NameResolutionError, AttributeError):
        return name
    return f"{resolved}.{rest}" if rest else resolved


def convert(obj: griffe.Object, text: str) -> str:
    """``text`` with every role as an optional cross-reference around its name in code."""

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        shown = name.rpartition(".")[2] if match["tilde"] else name.lstrip(".")
        target = _target(obj, name)
        return f'<autoref identifier="{target}" optional>`{shown}`</autoref>'

    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Converts the roles of each docstring once its object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, if it has one with a role in it."""
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = convert(obj, obj.docstring.value)

    def on_function_instance(self, *, func: griffe.Function, **kwargs: Any) -> None:
        """Show a permission ``mode`` default in octal, the way it is written and read."""
        for parameter in func.parameters:
            if parameter.name == "mode" and str(parameter.default).isdigit():
                parameter.default = oct(int(str(parameter.default)))
