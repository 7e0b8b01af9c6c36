"""The documentation site builds strictly and works served: links, anchors, search, defaults.

Runs where the docs tools are installed (``pip install -e '.[docs]'``); CI's "docs" section runs
the same build and check in its own environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKER = ROOT / ".ci" / "check_site.py"


def test_site_builds_strictly_and_works_served(tmp_path: Path) -> None:
    """`mkdocs build --strict` passes, and the site served has no broken link or anchor, a
    search index, and values (not constant names) as defaults in the API reference."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    if not CHECKER.is_file():
        pytest.skip("no .ci/check_site.py (not a clone)")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    checked = subprocess.run(
        [sys.executable, str(CHECKER), str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
