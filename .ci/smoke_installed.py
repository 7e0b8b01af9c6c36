"""Smoke test of the package as installed from the wheel (run by ``.ci/run``).

Run with the interpreter of a virtual environment holding only the wheel (and its ``cli`` extra),
from a directory outside the clone, so that ``import xai_images`` cannot find the source tree.
Checks what a missing file in the wheel would break: the import itself, ``py.typed``, the demo
prompts, the fake server (in-process and as ``python -m xai_images.testing``), the version in the
metadata and the User-Agent, and the pytest plugin's entry point.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import signal
import subprocess
import sys
import sysconfig
import tempfile
from importlib import resources
from pathlib import Path

import xai_images
from xai_images.testing import FakeXAIServer


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"smoke test FAILED: {what}")
    print(f"ok  {what}")


async def generate_once(base_url: str, directory: Path) -> int:
    """Generate one image through the public API and save it; return its size in bytes."""
    async with xai_images.AsyncClient(api_key="smoke-test", base_url=base_url) as client:
        response = await client.images.generate("a smoke test", n=1)
        (saved,) = await response.save(directory)
        return saved.bytes


async def fake_in_process(directory: Path) -> str | None:
    """Run one generation against an in-process fake; return the User-Agent it received."""
    async with FakeXAIServer() as server:
        size = await generate_once(server.base_url, directory)
        check(size > 0, f"in-process fake server: image of {size} bytes saved")
        (request,) = server.ledger.api_requests()
        return request.header("User-Agent")


async def fake_as_module(directory: Path) -> None:
    """Start ``python -m xai_images.testing``, generate through it, stop it with SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xai_images.testing", "--port", "0", stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        check(" on http://127.0.0.1:" in line, f"python -m xai_images.testing says: {line.strip()}")
        base_url = line.split(" on ", 1)[1].split()[0]
        size = await generate_once(base_url, directory)
        check(size > 0, f"fake server process: image of {size} bytes saved")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    check(code == 0, f"fake server process exits 0 on SIGTERM (got {code})")


def main() -> None:
    location = Path(xai_images.__file__).resolve()
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    check(location.is_relative_to(site), f"xai_images imported from {location.parent}")

    version = importlib.metadata.version("xai-images")
    check(version == xai_images.__version__, f"metadata version {version} == __version__")

    package = resources.files("xai_images")
    check(package.joinpath("py.typed").is_file(), "py.typed is installed")
    lines = package.joinpath("_ui", "demo_prompts.jsonl").read_text("utf-8").splitlines()
    prompts = [json.loads(line)["prompt"] for line in lines if line.strip()]
    check(len(prompts) > 0, f"demo prompts installed ({len(prompts)} prompts)")

    plugins = importlib.metadata.entry_points(group="pytest11")
    ours = [ep for ep in plugins if ep.dist is not None and ep.dist.name == "xai-images"]
    check(len(ours) == 1, "pytest11 entry point registered")
    check(ours[0].load().__name__ == "xai_images.testing.pytest_plugin", "plugin module loads")

    with tempfile.TemporaryDirectory() as tmp:
        user_agent = asyncio.run(fake_in_process(Path(tmp, "a")))
        check(user_agent == f"xai-images/{version}", f"User-Agent is {user_agent}")
        asyncio.run(fake_as_module(Path(tmp, "b")))


if __name__ == "__main__":
    main()
