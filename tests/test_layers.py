"""The package's modules import each other without cycles, and none is over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "xai_images"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Sibling modules ``path`` imports at module level (``if TYPE_CHECKING:`` blocks aside)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                visit(node.orelse if _is_type_checking(node) else node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody)
            elif isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                found.update(name.split(".")[0] for name in names if name.split(".")[0] in modules)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def test_no_import_cycles() -> None:
    """Following module-level imports from any module never leads back to it."""
    paths = {p.stem: p for p in PACKAGE.glob("*.py")}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    for start in graph:
        stack, seen = list(graph[start]), set()
        while stack:
            name = stack.pop()
            assert name != start, f"{start} imports itself through {sorted(seen)}"
            if name not in seen:
                seen.add(name)
                stack.extend(graph[name])


def test_no_module_of_the_layers_is_over_600_lines() -> None:
    """Every module of the package, the fake server's included, is at most 600 lines."""
    too_long = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if len(p.read_text(encoding="utf-8").splitlines()) > 600
    ]
    assert too_long == []
