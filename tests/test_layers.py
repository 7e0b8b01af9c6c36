"""The package's layers hold: imports go down only, never in a circle; modules stay small.

Layers, lowest first: the private root modules (``_errors``, ``_config``, ...), ``_wire/``,
``_results/``, ``_api/``, ``_bulk/``, ``_sync/``, ``testing/``, ``_ui/``, then the public faces
(``__init__`` and the other root modules without a leading underscore). Every import counts:
module-level, function-local and ``if TYPE_CHECKING:`` ones, relative or absolute.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import xai_images

# The package as imported: the checkout, or the installed wheel when CI tests the sdist against it.
PACKAGE = Path(xai_images.__file__).resolve().parent
ORDER = ["base", "_wire", "_results", "_api", "_bulk", "_sync", "testing", "_ui", "public"]
MAX_LINES = 600
MAX_ROOT_PRIVATE = 12


def _modules() -> dict[str, Path]:
    """Every module by dotted name (a package by its name, from its ``__init__.py``)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["xai_images", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    if len(parts) > 1:
        return parts[0]
    # The public faces (``bulk.py``, ``hooks.py``, ...) are the root modules users import.
    return "public" if path.stem == "__init__" or not path.stem.startswith("_") else "base"


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import of a module of the package in ``path``, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("xai_images"):
                continue
            submodules = [
                f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES
            ]
            if submodules:
                yield from ((node.lineno, sub) for sub in submodules)
            elif source in MODULES:
                yield node.lineno, source


GRAPH = {name: sorted({m for _, m in _imports(name, path)}) for name, path in MODULES.items()}


def test_imports_go_to_the_same_layer_or_lower() -> None:
    """No module imports a module of a higher layer, even inside a function or TYPE_CHECKING."""
    upward = []
    for name, path in sorted(MODULES.items()):
        here = ORDER.index(_layer(path))
        for line, target in _imports(name, path):
            there = _layer(MODULES[target])
            if ORDER.index(there) > here:
                where = path.relative_to(PACKAGE)
                upward.append(f"{where}:{line} ({_layer(path)}) imports {target} ({there})")
    assert upward == [], "imports from a higher layer:\n" + "\n".join(upward)


def _cycle() -> list[str] | None:
    """One import circle among the modules, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in GRAPH[name]:
            if target == name:
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(GRAPH):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_no_import_circles() -> None:
    """Following imports of any kind (TYPE_CHECKING and function-local too) never circles."""
    cycle = _cycle()
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_module_is_over_600_lines() -> None:
    """Every module of the package, the fake server's included, is at most 600 lines."""
    too_long = [
        f"{p.relative_to(PACKAGE)}: {n} lines"
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert too_long == [], "split these modules: " + ", ".join(too_long)


def test_few_private_modules_at_the_root() -> None:
    """At most 12 private modules stay at the package root; the rest live in layer folders."""
    root = sorted(p.name for p in PACKAGE.glob("_*.py") if p.name != "__init__.py")
    assert len(root) <= MAX_ROOT_PRIVATE, root


def test_the_checks_see_every_kind_of_import() -> None:
    """The import scanner finds relative, absolute, function-local and TYPE_CHECKING imports."""
    assert "xai_images._api._client" in GRAPH["xai_images._bulk._client"]  # module level
    # Function-local (deferred) and absolute imports count too.
    assert "xai_images._bulk._source_batchapi" in GRAPH["xai_images._bulk._client"]
    assert "xai_images._bulk._client" in GRAPH["xai_images._ui._cli"]
    # TYPE_CHECKING imports count.
    assert "xai_images._api._requester" in GRAPH["xai_images._api._images"]
