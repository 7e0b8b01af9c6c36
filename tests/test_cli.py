"""The xai-images command, run in-process through main(argv) and once as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xai_images._ui._cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from xai_images.bulk import load_manifest
from xai_images.testing import FakeXAIServer, sample_image


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Small images keep CLI runs quick."""
    return {"image_bytes": 512}


async def cli(*argv: str) -> int:
    # main() runs its own event loop; a worker thread keeps the fake server's loop serving.
    return await asyncio.to_thread(main, list(argv))


def write_jobs(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_missing_key_says_how_to_set_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without a key the command exits 2 and names XAI_API_KEY and --api-key."""
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    jobs = write_jobs(tmp_path / "j.jsonl", '{"prompt": "x"}')
    assert main(["batch", str(jobs), "-o", str(tmp_path / "out")]) == EXIT_USAGE
    assert "set XAI_API_KEY or pass --api-key" in capsys.readouterr().err


def test_unreachable_base_url_fails_fast(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A base URL nobody listens on stops the run before any item, with exit code 2."""
    jobs = write_jobs(tmp_path / "j.jsonl", '{"prompt": "x"}')
    code = main(
        [
            "batch",
            str(jobs),
            "-o",
            str(tmp_path / "out"),
            "--api-key",
            "k",
            "--base-url",
            "http://127.0.0.1:9/v1",
        ]
    )
    assert code == EXIT_USAGE
    assert "cannot reach the API" in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


async def test_batch_success_writes_manifest_gallery_and_exits_0(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clean run exits 0 and leaves images, the manifest and index.html."""
    jobs = write_jobs(tmp_path / "j.jsonl", '{"prompt": "a"}', '{"prompt": "b", "id": "bee"}')
    out = tmp_path / "out"
    assert await cli("batch", str(jobs), "-o", str(out), "--rps", "50", "--plain") == EXIT_OK
    assert (out / "bee-0.png").is_file()
    assert {r.status for r in load_manifest(out / "manifest.jsonl").values()} == {"ok"}
    assert (out / "index.html").is_file()
    printed = capsys.readouterr()
    assert "summary" in printed.out
    assert "ok      bee" in printed.err  # one plain line per item when not a terminal


async def test_malformed_line_is_reported_and_exit_code_is_1(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad line is reported with its number, the rest runs, and the exit code says failed."""
    jobs = write_jobs(tmp_path / "j.jsonl", '{"prompt": "a"}', "{oops", '{"prompt": "c"}')
    out = tmp_path / "out"
    assert await cli("batch", str(jobs), "-o", str(out), "--rps", "50", "--plain") == EXIT_FAILED
    assert "line 2" in capsys.readouterr().out
    assert env.ledger.images_billed == 2


async def test_on_error_stop_sends_nothing(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --on-error stop a bad line stops the run before any request, exit code 2."""
    jobs = write_jobs(tmp_path / "j.jsonl", '{"prompt": "a"}', '{"prompt": "b", "n": 99}')
    code = await cli("batch", str(jobs), "-o", str(tmp_path / "o"), "--on-error", "stop")
    assert code == EXIT_USAGE
    assert "line 2: n" in capsys.readouterr().err
    assert env.ledger.api_requests() == []


async def test_generate_saves_and_prints_paths(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`generate` saves the images in -o and prints one path per image."""
    assert await cli("generate", "a red kite", "-n", "2", "-o", str(tmp_path)) == EXIT_OK
    paths = [Path(p) for p in capsys.readouterr().out.split()]
    assert len(paths) == 2
    assert all(p.is_file() and p.parent == tmp_path for p in paths)


async def test_edit_sends_local_image(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edit --image PATH` sends the file as a data URI and saves the result."""
    source = tmp_path / "in.png"
    source.write_bytes(sample_image("png", 512, 2))
    code = await cli("edit", "make it blue", "--image", str(source), "-o", str(tmp_path / "o"))
    assert code == EXIT_OK
    [request] = env.ledger.api_requests()
    assert request.body["image"]["url"].startswith("data:image/png;base64,")


async def test_gallery_command(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gallery DIR` (re)writes index.html from the manifest; no manifest is exit code 2."""
    jobs = write_jobs(tmp_path / "j.jsonl", '{"prompt": "g", "id": "g"}')
    out = tmp_path / "out"
    await cli("batch", str(jobs), "-o", str(out), "--no-gallery", "--plain")
    assert not (out / "index.html").exists()
    assert main(["gallery", str(out)]) == EXIT_OK
    assert 'src="g-0.png"' in (out / "index.html").read_text()
    assert main(["gallery", str(tmp_path / "empty")]) == EXIT_USAGE


def _demo_cmd(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from xai_images._ui._cli import main; sys.exit(main(sys.argv[1:]))",
        "demo",
        *args,
    ]


def test_demo_runs_in_a_subprocess(tmp_path: Path) -> None:
    """`xai-images demo` needs no key, writes images, manifest and gallery, exits 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("XAI_API_KEY", "XAI_BASE_URL")}
    out = tmp_path / "demo"
    done = subprocess.run(
        _demo_cmd("-o", str(out), "--count", "3", "--plain"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_OK, done.stderr
    records = load_manifest(out / "manifest.jsonl")
    assert len(records) == 5  # 3 prompts + 2 edits
    assert all(r.status == "ok" for r in records.values())
    assert (out / "index.html").is_file()
    assert "gallery:" in done.stdout


def test_sigint_stops_cleanly_and_rerun_resumes(tmp_path: Path) -> None:
    """Ctrl-C finishes in-flight items, exits 130 with a summary; the re-run completes the job."""
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        _demo_cmd("-o", str(out), "--plain"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if " ok " in line:
            break
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED
    assert "interrupted" in stdout
    first = load_manifest(out / "manifest.jsonl")
    assert 0 < len(first) < 38
    again = subprocess.run(
        _demo_cmd("-o", str(out), "--plain"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == EXIT_OK
    records = load_manifest(out / "manifest.jsonl")
    assert [r.status for r in records.values()] == ["ok"] * 38
    # The second fake server billed only the images the first run had not finished.
    remaining = sum(len(r.files) for r in records.values()) - sum(
        len(r.files) for r in first.values() if r.status == "ok"
    )
    assert f"{remaining} images billed" in again.stdout
