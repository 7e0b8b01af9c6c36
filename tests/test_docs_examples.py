"""Every example in README.md and docs/ runs as written, from an empty directory, in a fresh shell.

- Each ```python block runs as a script against a fake server (``XAI_API_KEY``/``XAI_BASE_URL``
  set as the README says), in an empty directory: examples make their own input files.
- Each ```bash (or ```sh) block is marked on the line before it: ``<!-- test: run -->``
  blocks run in bash from an empty directory holding only ``.venv`` (this environment), with
  the venv NOT activated (its ``bin`` is not on PATH), as a newcomer's shell after the quick
  start;
  ``<!-- test: skip: why -->`` blocks say why they cannot run here (CI runs them, or they
  serve until Ctrl-C). An unmarked shell block fails the suite.
- The README's "Testing your code" snippet passes in a brand-new project configured only as
  the README says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from xai_images.testing import FakeXAIServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
# A bash block and the marker line before it (if any).
BASH = re.compile(r"^(<!-- test: [^\n]*-->\n)?```(?:bash|sh)\n(.*?)^```", re.DOTALL | re.MULTILINE)
VENV = Path(sys.prefix)


def _python_examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for number, match in enumerate(PYTHON.finditer(doc.read_text(encoding="utf-8")), 1):
            found.append((f"{doc.name}#{number}", match.group(1)))
    return found


def _bash_blocks() -> list[tuple[str, str, str]]:
    """(where, marker, code) of every bash block; marker is "run", "skip: ..." or ""."""
    found = []
    for doc in DOCS:
        for number, match in enumerate(BASH.finditer(doc.read_text(encoding="utf-8")), 1):
            marker = (match.group(1) or "").removeprefix("<!-- test:").removesuffix("-->\n")
            found.append((f"{doc.name}#bash{number}", marker.strip(), match.group(2)))
    return found


def _fresh_shell_env(server: FakeXAIServer) -> dict[str, str]:
    """The environment of a new terminal after the quick start: the venv is not activated."""
    venv_bin = str(VENV / "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(
        PATH=os.pathsep.join(path) or "/usr/bin:/bin",
        XAI_API_KEY=server.api_key,
        XAI_BASE_URL=server.base_url,
    )
    return env


async def _run(
    argv: list[str], cwd: Path, env: dict[str, str], *, own_group: bool = False
) -> tuple[int, str]:
    """Run ``argv``; with ``own_group``, in a process group of its own that is killed after,
    so that nothing a shell block started in the background outlives it."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=own_group,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=180)
    finally:
        if own_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, output.decode(errors="replace")


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Path:
    """An empty directory but for ``.venv``: where a newcomer's clone has it."""
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(VENV, target_is_directory=True)
    return workdir


@pytest.mark.parametrize(
    ("where", "code"), _python_examples(), ids=[w for w, _ in _python_examples()]
)
async def test_python_example_runs(where: str, code: str, fresh_dir: Path) -> None:
    """The example exits 0 with `.venv/bin/python example.py` against a fake server."""
    (fresh_dir / "example.py").write_text(code, encoding="utf-8")
    async with FakeXAIServer() as server:
        env = {**_fresh_shell_env(server), "XAI_IMAGES_EXAMPLE_FAKE": "1"}
        status, output = await _run([".venv/bin/python", "example.py"], fresh_dir, env)
    assert status == 0, f"{where} failed:\n{output}"


def test_every_bash_block_is_marked() -> None:
    """Each shell block says whether the suite runs it or why not."""
    unmarked = [where for where, marker, _ in _bash_blocks() if not marker]
    assert not unmarked, f"mark with <!-- test: run --> or <!-- test: skip: why -->: {unmarked}"


# A block that starts a server on a fixed port runs in CI's one-at-a-time pass (`realtime`), so
# that parallel suites never race for the port.
RUNNABLE = [
    pytest.param(w, m, code, id=w, marks=[pytest.mark.realtime] if "(port" in m else [])
    for w, m, code in _bash_blocks()
    if m.startswith("run")
]


@pytest.mark.parametrize(("where", "marker", "code"), RUNNABLE)
async def test_bash_block_runs(where: str, marker: str, code: str, fresh_dir: Path) -> None:
    """The block runs as written in bash (set -e) from a fresh, non-activated shell."""
    port = re.search(r"\(port (\d+)\)", marker)
    if port is not None:
        # The block starts a server on a fixed port (the docs' own): the port must be free.
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", int(port.group(1))))
            except OSError:
                pytest.skip(f"port {port.group(1)} is in use on this machine")
    (fresh_dir / "block.sh").write_text(code, encoding="utf-8")
    async with FakeXAIServer(image_bytes=512) as server:
        status, output = await _run(
            ["bash", "-e", "block.sh"], fresh_dir, _fresh_shell_env(server), own_group=True
        )
    assert status == 0, f"{where} failed:\n{output}"


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


async def test_testing_snippet_passes_in_a_new_project(tmp_path: Path) -> None:
    """The "Testing your code" snippet, with only the README's pyproject.toml lines, passes
    under pytest in a project that has nothing else."""
    section = _readme_section("Testing your code")
    toml = re.search(r"^```toml\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    test = re.search(r"^```py\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    assert toml is not None
    assert test is not None
    project = tmp_path / "new-project"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(toml.group(1), encoding="utf-8")
    (project / "tests" / "test_my_job.py").write_text(test.group(1), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "PYTEST_"))}
    status, output = await _run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], project, env
    )
    assert status == 0, output
    assert "1 passed" in output
