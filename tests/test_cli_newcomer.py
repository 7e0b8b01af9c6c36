"""The command as a newcomer meets it, run as a subprocess: the total known from the start, every
bad job line reported at once, "did you mean" for keys and options, and an honest edit --help."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from xai_images._bulk._jobs import count_jobs
from xai_images._ui._cli import _parser, _request_from
from xai_images.bulk import JobFileError, load_jobs
from xai_images.testing import FakeXAIServer

XAI_IMAGES = Path(sys.executable).with_name("xai-images")


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    return {"image_bytes": 256}


async def xai_images(
    *args: str, server: FakeXAIServer | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XAI_API_KEY", "XAI_BASE_URL")}
    if server is not None:
        env.update(XAI_API_KEY=server.api_key, XAI_BASE_URL=server.base_url)
    proc = await asyncio.create_subprocess_exec(
        str(XAI_IMAGES),
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_progress_shows_the_whole_total_from_the_first_line(
    fake_xai_server: FakeXAIServer, tmp_path: Path
) -> None:
    """Every progress line of a 40-item job says /40, the first one included."""
    jobs = write_lines(
        tmp_path / "jobs.jsonl", [json.dumps({"prompt": f"study {i}"}) for i in range(40)]
    )
    code, _out, err = await xai_images(
        "batch", str(jobs), "-o", str(tmp_path / "out"), "--plain", "--rps", "1000",
        server=fake_xai_server,
    )  # fmt: skip
    assert code == 0, err
    counts = [line.split("]", 1)[0] + "]" for line in err.splitlines() if line.startswith("[")]
    assert len(counts) == 40
    assert counts[0] == "[1/40]"
    assert all(c.endswith("/40]") for c in counts)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        '{"prompt": "a"}',
        '{"prompt": "a"}\n\n  \n{"prompt": "b"}\r\n{"prompt": "c"}\r',
        '\ufeff{"prompt": "a"}\n   \n{"prompt": "b"}\n',
        'not json\n{"prompt": "b", "n": 99}\n\n',
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 1 << 20])
def test_count_jobs_counts_what_load_jobs_reads(tmp_path: Path, text: str, chunk_size: int) -> None:
    """The cheap count equals the number of items load_jobs yields, whatever the chunking."""
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(text.encode("utf-8"))
    assert count_jobs(path, chunk_size=chunk_size) == len(load_jobs(path))


def test_stop_mode_reports_every_bad_line(tmp_path: Path) -> None:
    """load_jobs(on_error="stop") lists all bad lines, not just the first."""
    path = write_lines(
        tmp_path / "jobs.jsonl",
        ['{"prompt": "ok"}', '{"prompt": "a", "n": 99}', "nope", '{"promt": "x"}'],
    )
    with pytest.raises(JobFileError) as caught:
        load_jobs(path, on_error="stop")
    assert [job.line for job in caught.value.invalid] == [2, 3, 4]
    assert caught.value.field == "line 2: n"
    text = str(caught.value)
    assert "3 bad lines" in text
    assert "line 2: n" in text
    assert "line 3" in text
    assert "line 4: promt" in text


async def test_on_error_stop_lists_every_bad_line_with_a_cap(
    fake_xai_server: FakeXAIServer, tmp_path: Path
) -> None:
    """--on-error stop: exit 2, nothing sent, the first 20 bad lines shown and the rest counted,
    a misspelt key with its suggestion."""
    lines = ['{"prompt": "fine"}', '{"promt": "a fox"}']
    lines += [json.dumps({"prompt": "x", "n": 50 + i}) for i in range(24)]
    jobs = write_lines(tmp_path / "jobs.jsonl", lines)
    code, _out, err = await xai_images(
        "batch", str(jobs), "-o", str(tmp_path / "out"), "--on-error", "stop",
        server=fake_xai_server,
    )  # fmt: skip
    assert code == 2
    assert "25 bad lines, nothing was sent" in err
    assert "line 2: promt" in err
    assert "did you mean 'prompt'?" in err
    assert "line 21: n" in err
    assert "line 22: n" not in err
    assert "... and 5 more bad line(s)" in err
    assert fake_xai_server.ledger.api_requests() == []


async def test_unknown_option_gets_a_suggestion(tmp_path: Path) -> None:
    """A misspelt option exits 2 and suggests the option meant."""
    code, _out, err = await xai_images("batch", "jobs.jsonl", "-o", "out", "--rsp", "3")
    assert code == 2
    assert "unrecognized arguments: --rsp (did you mean --rps?)" in err


async def test_mistyped_command_and_choice_get_suggestions(tmp_path: Path) -> None:
    """A misspelt subcommand or choice exits 2 with a suggestion."""
    code, _out, err = await xai_images("bacth", "jobs.jsonl")
    assert code == 2
    assert "did you mean batch?" in err
    code, _out, err = await xai_images("demo", "--via", "batchapi", cwd=tmp_path)
    assert code == 2
    assert "did you mean batch-api?" in err


async def test_edit_help_says_what_a_command_line_can_give() -> None:
    """`edit --help` names paths, URLs and file ids, not bytes or FileId objects."""
    code, out, _err = await xai_images("edit", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "a local path, an http(s) URL, a data URI, or file_id:ID" in flat
    assert "FileId" not in flat
    assert "bytes or a FileId" not in flat


def test_file_id_on_the_command_line_is_a_files_store_id() -> None:
    """`--image file_id:ID` becomes a FileId input; another value stays a path or URL."""
    args = _parser().parse_args(["edit", "p", "--image", "file_id:file-123"])
    request = _request_from(args)
    assert request.to_json()["image"] == {"file_id": "file-123"}
