"""docs/architecture.md names every module of the package, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

import xai_images

ROOT = Path(__file__).resolve().parent.parent
# The package as imported: the checkout, or the installed wheel when CI tests the sdist against it.
PACKAGE = Path(xai_images.__file__).resolve().parent
DOC = ROOT / "docs" / "architecture.md"
SECTION = "## Every module"
# A table row whose first cell is one module path in backticks: | `_api/_client.py` | ... |
ROW = re.compile(r"^\|\s*`([^`]+\.py)`\s*\|")


def _documented() -> set[str]:
    text = DOC.read_text(encoding="utf-8")
    assert SECTION in text, f"{DOC.name} has no '{SECTION}' section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return {m.group(1) for line in section.splitlines() if (m := ROW.match(line))}


def _modules() -> set[str]:
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}


def test_every_module_is_in_the_architecture_doc() -> None:
    """Each .py under xai_images/ (testing/ included) has a row in docs/architecture.md."""
    missing = sorted(_modules() - _documented())
    assert missing == [], (
        f"docs/architecture.md does not name {len(missing)} module(s); add one row each "
        f"(| `path` | what it holds |) to the table of its layer under '{SECTION}': "
        + ", ".join(missing)
    )


def test_the_architecture_doc_names_no_module_that_does_not_exist() -> None:
    """Rows of docs/architecture.md name only modules that exist (none moved or deleted)."""
    stale = sorted(_documented() - _modules())
    assert stale == [], (
        f"docs/architecture.md names {len(stale)} module(s) that do not exist; remove or "
        f"rename their rows under '{SECTION}': " + ", ".join(stale)
    )
