"""Every ```python example in README.md and docs/ runs as written against the fake server."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from xai_images.testing import FakeXAIServer, sample_image

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _examples() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, match in enumerate(FENCE.finditer(doc.read_text(encoding="utf-8")), 1):
            found.append((f"{doc.name}#{number}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "code"), _examples(), ids=[w for w, _ in _examples()])
async def test_example_runs(where: str, code: str, tmp_path: Path) -> None:
    """The example exits 0 with XAI_API_KEY and XAI_BASE_URL pointing at a fake server."""
    (tmp_path / "photo.jpg").write_bytes(sample_image("jpeg", 4096, variant=0))
    (tmp_path / "sketch.png").write_bytes(sample_image("png", 4096, variant=1))
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    async with FakeXAIServer() as server:
        env = {
            **os.environ,
            "XAI_API_KEY": server.api_key,
            "XAI_BASE_URL": server.base_url,
            "XAI_IMAGES_EXAMPLE_FAKE": "1",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, f"{where} failed:\n{output.decode(errors='replace')}"
