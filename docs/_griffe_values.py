"""A griffe extension for the API reference: show values, not the names behind them.

- A parameter whose default is a module constant (``max_answer_bytes: int =
  DEFAULT_MAX_ANSWER_BYTES``) shows the constant's value (``134217728``), read from the
  imported package, so the page can never disagree with the code.
- A read-only property declared through the package's ``ReadOnly`` descriptor
  (``base_url: ReadOnly[str] = ReadOnly("_base_url")``) shows as what a user sees:
  ``base_url: str``, without the descriptor's internals; so does an attribute set in
  ``__init__`` from ``self`` (``images: Images = Images(self)`` shows as ``images: Images``).

Loaded by mkdocstrings (``extensions:`` in mkdocs.yml); the site build needs nothing else.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import griffe

_SKIP = object()


def _constant(path: str) -> Any:
    """The value at ``package.module.NAME``, or ``_SKIP`` when it is not a plain constant."""
    module_name, _, name = path.rpartition(".")
    try:
        value = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return _SKIP
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return _SKIP
    return value


class ShowValues(griffe.Extension):
    """Replace constant names in defaults with their values; unwrap ``ReadOnly`` attributes."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        for member in obj.members.values():
            if member.is_alias:
                continue
            if isinstance(member, griffe.Function):
                self._defaults(member)
            elif isinstance(member, griffe.Attribute):
                self._read_only(member)
            if isinstance(member, (griffe.Module, griffe.Class)):
                self._walk(member, seen)

    @staticmethod
    def _defaults(func: griffe.Function) -> None:
        for param in func.parameters:
            default = param.default
            if isinstance(default, (griffe.ExprName, griffe.ExprAttribute)):
                value = _constant(default.canonical_path)
                if value is not _SKIP:
                    param.default = repr(value)

    @staticmethod
    def _read_only(attr: griffe.Attribute) -> None:
        if attr.value is not None and re.search(r"\bself\b", str(attr.value)):
            attr.value = None
        annotation = attr.annotation
        if isinstance(annotation, griffe.ExprSubscript) and str(annotation.left) == "ReadOnly":
            attr.annotation = annotation.slice
            attr.value = None
            attr.labels.add("read-only")
