"""`xai-images demo`: exit 0 by default; faults only when asked, and labelled simulated."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import xai_images
from xai_images._ui import _demo
from xai_images._ui._cli import EXIT_FAILED, main
from xai_images.bulk import load_manifest
from xai_images.testing import FakeXAIServer

XAI_IMAGES = Path(sys.executable).with_name("xai-images")


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XAI_API_KEY", "XAI_BASE_URL")}
    return subprocess.run(
        [str(XAI_IMAGES), "demo", "--plain", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_batch_api_demo_exits_0_and_cards_show_model_and_revised_prompt(tmp_path: Path) -> None:
    """`demo --via batch-api` exits 0; each card names the model and shows the revised prompt."""
    done = run_demo(tmp_path, "--via", "batch-api", "--count", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "simulated" not in done.stdout + done.stderr
    out = tmp_path / "xai-images-demo"
    records = load_manifest(out / "manifest.jsonl")
    assert [r.status for r in records.values()] == ["ok"] * 4
    assert all(r.model for r in records.values())
    page = (out / "index.html").read_text()
    models = [html.unescape(m) for m in re.findall(r"model</dt><dd>([^<]*)", page)]
    assert len(models) == 4
    assert "default" not in models
    revised = re.findall(r'<p class="revised">([^<]*)</p>', page)
    assert len(revised) == 4
    assert all(html.unescape(text).strip() for text in revised)


def test_realtime_demo_exits_0(tmp_path: Path) -> None:
    """`demo` (real-time) exits 0 and mentions no simulated fault."""
    done = run_demo(tmp_path, "--count", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "simulated" not in done.stdout + done.stderr


def test_faults_are_opt_in() -> None:
    """The demo's fake makes up no fault unless asked; asked, every one carries the label."""
    calm = _demo.demo_server(via="batch-api").settings
    assert calm.batch_failure_rate == calm.generation_fault_rate == calm.download_fault_rate == 0
    faulty = _demo.demo_server(via="batch-api", faults=True).settings
    assert faulty.batch_failure_rate > 0
    assert "simulated" in faulty.fault_label
    realtime = _demo.demo_server(faults=True).settings
    assert realtime.generation_fault_rate > 0
    assert "simulated" in realtime.fault_label


def test_simulated_failures_say_so_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --simulate-faults, a failed item says "simulated" in progress, summary and gallery."""
    original = _demo.demo_server

    def always_failing(**kwargs: Any) -> Any:
        server = original(**kwargs)
        server.settings.batch_failure_rate = 1.0
        return server

    monkeypatch.setattr(_demo, "demo_server", always_failing)
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--plain", "--via", "batch-api", "--count", "1", "--simulate-faults"])
    assert code == EXIT_FAILED
    captured = capsys.readouterr()
    failed_lines = [
        line for line in (captured.out + captured.err).splitlines() if "generation failed" in line
    ]
    assert failed_lines
    assert all("simulated" in line for line in failed_lines)
    page = (tmp_path / "xai-images-demo" / "index.html").read_text()
    assert "simulated" in page


async def test_fake_labels_its_random_faults() -> None:
    """A fault the fake makes up carries `fault_label` in the error the caller sees."""
    async with (
        FakeXAIServer(generation_fault_rate=1.0, fault_label=_demo.SIMULATED) as server,
        xai_images.AsyncClient(
            api_key=server.api_key, base_url=server.base_url, max_retries=0
        ) as client,
    ):
        with pytest.raises(xai_images.APIStatusError) as caught:
            await client.images.generate("a cat")
    assert "simulated" in str(caught.value)
