"""Check that the built sdist and wheel hold what they should (run by ``.ci/run``).

Usage: ``python .ci/check_dists.py DIST_DIR PYTHON_VERSION...`` (the supported minor versions).

The wheel must hold every file of the package (modules, ``py.typed``, the demo prompts, the fake
server), no tests, the console script and the pytest plugin entry point, and metadata naming the
version of ``xai_images/_version.py`` and a classifier for each supported Python. The sdist must
hold the package, the tests, the docs, ``README.md`` and ``pyproject.toml``. The expected files are
the ones git tracks, so a file added to the package but left out of a build fails here.
Standard library only: it runs on any interpreter.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDIST_TREES = ("xai_images", "tests", "docs", "examples")
SDIST_FILES = ("README.md", "pyproject.toml", "mkdocs.yml")
ENTRY_POINTS = (
    ("console_scripts", "xai-images = xai_images._ui._cli:main"),
    ("pytest11", "xai_images = xai_images.testing.pytest_plugin"),
)


def tracked_files() -> set[str]:
    """Files git tracks (the clone CI runs on), or every file outside caches without git."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        return {name for name in out.decode().split("\0") if name}
    except (OSError, subprocess.CalledProcessError):
        return {
            str(path.relative_to(ROOT))
            for path in ROOT.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and ".git" not in path.parts
        }


def source_version() -> str:
    text = (ROOT / "xai_images" / "_version.py").read_text("utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise SystemExit("xai_images/_version.py: no __version__ line")
    return match.group(1)


def only(dist_dir: Path, pattern: str) -> Path:
    found = sorted(dist_dir.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"expected one {pattern} in {dist_dir}, found {[p.name for p in found]}")
    return found[0]


def check_metadata(kind: str, text: str, version: str, pythons: list[str]) -> list[str]:
    meta = HeaderParser().parsestr(text)
    problems = []
    if meta["Version"] != version:
        problems.append(f"{kind}: metadata version {meta['Version']} != _version.py's {version}")
    if meta["Requires-Python"] != f">={pythons[0]}":
        problems.append(f"{kind}: Requires-Python is {meta['Requires-Python']}, not >={pythons[0]}")
    classifiers = set(meta.get_all("Classifier") or [])
    for python in pythons:
        if f"Programming Language :: Python :: {python}" not in classifiers:
            problems.append(f"{kind}: no classifier for Python {python}")
    return problems


def check_wheel(wheel: Path, tracked: set[str], version: str, pythons: list[str]) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"xai_images-{version}.dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    problems = check_metadata("wheel", metadata, version, pythons)
    package = {name for name in tracked if name.startswith("xai_images/")}
    problems += [f"wheel: missing {name}" for name in sorted(package - names)]
    strays = [n for n in names if not n.startswith(("xai_images/", f"{dist_info}/"))]
    problems += [f"wheel: holds {name} (outside the package)" for name in sorted(strays)]
    tests = [n for n in names if "tests/" in n or Path(n).name.startswith(("test_", "conftest"))]
    problems += [f"wheel: holds test file {name}" for name in sorted(tests)]
    sections = re.split(r"^\[([^\]]+)\]$", entry_points, flags=re.MULTILINE)
    declared = {
        (section, line.strip())
        for section, body in zip(sections[1::2], sections[2::2], strict=True)
        for line in body.splitlines()
        if line.strip()
    }
    for group, line in ENTRY_POINTS:
        if (group, line) not in declared:
            problems.append(f"wheel: entry point [{group}] {line} missing")
    return problems


def check_sdist(sdist: Path, tracked: set[str], version: str, pythons: list[str]) -> list[str]:
    prefix = f"xai_images-{version}/"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(prefix) for name in archive.getnames()}
        pkg_info = archive.extractfile(f"{prefix}PKG-INFO")
        assert pkg_info is not None
        problems = check_metadata("sdist", pkg_info.read().decode(), version, pythons)
    wanted = {n for n in tracked if n.split("/")[0] in SDIST_TREES or n in SDIST_FILES}
    for tree in SDIST_TREES:
        if not any(name.startswith(f"{tree}/") for name in wanted):
            problems.append(f"sdist: nothing tracked under {tree}/ (is the checker out of date?)")
    problems += [f"sdist: missing {name}" for name in sorted(wanted - names)]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    dist_dir, pythons = Path(argv[0]), argv[1:]
    tracked, version = tracked_files(), source_version()
    wheel, sdist = only(dist_dir, "*.whl"), only(dist_dir, "*.tar.gz")
    problems = check_wheel(wheel, tracked, version, pythons)
    problems += check_sdist(sdist, tracked, version, pythons)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{wheel.name} and {sdist.name}: contents, entry points and metadata as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
