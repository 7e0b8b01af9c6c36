"""One malformed job line never ends a job: it fails alone, with its line number, everywhere."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xai_images import AsyncClient, GenerateRequest, ValidationError
from xai_images._bulk._jobs import derive_id
from xai_images._ui._cli import EXIT_FAILED, main
from xai_images.bulk import InvalidJob, load_jobs
from xai_images.testing import FakeXAIServer

# One line of each class that once escaped the parser or a request check, by name.
DEEP = b"[" * 100_000 + b"]" * 100_000
MALFORMED: dict[str, bytes] = {
    "nested past the recursion limit": DEEP,
    "nested objects past the limit": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "an int literal past int_max_str_digits": b'{"prompt": "x", "n": ' + b"9" * 5000 + b"}",
    "a float that overflows": b'{"prompt": "x", "n": 1e400}',
    "invalid UTF-8": b'{"prompt": "caf\xe9"}',
    "a non-object": b"[1, 2, 3]",
    "a bare number": b"5",
    "a lone surrogate in the prompt": b'{"prompt": "a \\ud800 cat"}',
    "a lone surrogate in a key of extra_body": b'{"prompt": "x", "extra_body": {"\\udfff": 1}}',
    "a lone surrogate in the model": b'{"prompt": "x", "model": "m\\ud800"}',
    "a lone surrogate in the user": b'{"prompt": "x", "user": "\\udc00"}',
    "extra_body nested deeper than the limit": (
        b'{"prompt": "x", "extra_body": ' + b'{"a":' * 200 + b"1" + b"}" * 200 + b"}"
    ),
    "an unknown home directory": b'{"prompt": "x", "image": "~no-such-user-xyz/a.png"}',
    "a file name too long": b'{"prompt": "x", "image": "' + b"a" * 5000 + b'.png"}',
    "a NUL in a path": b'{"prompt": "x", "image": "a\\u0000b.png"}',
    "a file:// input": b'{"prompt": "x", "image": "file:///etc/passwd"}',
    "an infinite attempt count": b'{"prompt": "x", "n": Infinity}',
    "NaN": b'{"prompt": "x", "n": NaN}',
    "a prompt of the wrong type": b'{"prompt": {"nested": [1, 2]}}',
    "truncated JSON": b'{"prompt": "x"',
}
GOOD = b'{"prompt": "a good line"}'


def job_file(tmp_path: Path, bad: bytes) -> Path:
    """A job of a good line, the bad line (line 2), and another good line (line 3)."""
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(GOOD + b"\n" + bad + b"\n" + b'{"prompt": "another good line"}\n')
    return path


@pytest.mark.parametrize("bad", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_bad_line_becomes_an_invalid_job_with_its_number(tmp_path: Path, bad: bytes) -> None:
    """load_jobs reports the line as InvalidJob(line=2) and still reads lines 1 and 3."""
    jobs = load_jobs(job_file(tmp_path, bad))
    assert [type(j).__name__ for j in jobs] == ["GenerateRequest", "InvalidJob", "GenerateRequest"]
    invalid = jobs[1]
    assert isinstance(invalid, InvalidJob)
    assert invalid.line == 2
    assert isinstance(invalid.error, ValidationError)
    assert invalid.error.field.startswith("line 2")


@pytest.mark.parametrize("bad", MALFORMED.values(), ids=MALFORMED.keys())
def test_on_error_stop_raises_a_validation_error(tmp_path: Path, bad: bytes) -> None:
    """With on_error="stop" the same line raises ValidationError naming line 2, nothing else."""
    with pytest.raises(ValidationError, match="line 2"):
        load_jobs(job_file(tmp_path, bad), on_error="stop")


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Small images keep these runs quick."""
    return {"image_bytes": 256}


async def test_batch_of_a_file_runs_every_good_line(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """client.bulk(path) fails each bad line alone, by number, and bills every good line once."""
    lines = [GOOD, *MALFORMED.values(), b'{"prompt": "the last line"}']
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    outcomes = await client.bulk(path, output_dir=tmp_path / "out").collect()
    failed = sorted(o.line for o in outcomes if o.status == "failed" if o.line is not None)
    assert failed == list(range(2, len(lines)))
    assert sorted(o.line for o in outcomes if o.ok if o.line is not None) == [1, len(lines)]
    assert server.ledger.images_billed == 2


async def test_batch_of_dicts_fails_bad_dicts_alone(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Dicts given from Python with the same faults fail as items; the good one runs."""
    deep: object = 1
    for _ in range(5000):
        deep = {"a": deep}
    jobs = [
        {"prompt": "a \ud800 cat"},
        {"prompt": "x", "extra_body": deep},
        {"prompt": "x", "extra_body": {"k\udfff": 1}},
        {"prompt": "x", "n": 10**5000},
        {"prompt": "x", "image": "ftp://example.com/a.png"},
        {"prompt": "fine"},
    ]
    outcomes = await client.bulk(jobs, output_dir=tmp_path / "out").collect()
    assert sorted(o.status for o in outcomes) == ["failed"] * 5 + ["ok"]
    assert all(isinstance(o.error, ValidationError) for o in outcomes if not o.ok)
    assert server.ledger.images_billed == 1


async def test_batch_of_requests_fails_a_surrogate_prompt_alone(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A GenerateRequest with a lone surrogate fails as an item, before its id is derived."""
    requests = [GenerateRequest("bad \udc80"), GenerateRequest("good")]
    outcomes = await client.bulk(requests, output_dir=tmp_path / "out").collect()
    assert sorted(o.status for o in outcomes) == ["failed", "ok"]
    assert server.ledger.images_billed == 1


async def test_cli_batch_reports_bad_lines_and_runs_the_rest(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """xai-images batch names every bad line, runs the good ones and exits 1 (some failed)."""
    lines = [GOOD, DEEP, MALFORMED["an int literal past int_max_str_digits"], b'{"prompt": "z"}']
    lines.append(MALFORMED["a lone surrogate in the prompt"])
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    argv = ["batch", str(path), "-o", str(tmp_path / "out"), "--rps", "50", "--plain"]
    assert await asyncio.to_thread(main, argv) == EXIT_FAILED
    printed = capsys.readouterr()
    for number in (2, 3, 5):
        assert f"line {number}" in printed.out + printed.err
    assert env.ledger.images_billed == 2


# -- properties ----------------------------------------------------------------------------------

# Lines without line breaks (bytes.splitlines() splits on \n and \r only).
_raw_line = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
_json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
# Lone surrogates included: st.characters() leaves them out.
_any_text = st.text(st.characters() | st.integers(0xD800, 0xDFFF).map(chr), max_size=30)
_field_names = st.sampled_from(
    ["prompt", "n", "model", "quality", "user", "extra_body", "image", "images", "id", "zzz"]
)
_job_object = st.dictionaries(_field_names, _json | _any_text, max_size=5)
_json_line = st.one_of(
    _json.map(lambda v: json.dumps(v).encode()),
    _job_object.map(lambda v: json.dumps(v).encode()),
    _job_object.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(4000, 6000).map(lambda digits: b'{"prompt": "x", "n": ' + b"7" * digits + b"}"),
)
_line = _raw_line | _json_line


def _check_jobs(path: Path, lines: list[bytes]) -> None:
    jobs = load_jobs(path)
    numbers = [j.line for j in jobs]
    assert numbers == sorted(set(numbers))  # one entry per line at most, in order
    assert all(n is not None and 1 <= n <= len(lines) for n in numbers)
    for job in jobs:
        assert isinstance(job, (InvalidJob, GenerateRequest)) or job.kind == "edit"
        if isinstance(job, InvalidJob):
            assert isinstance(job.error, ValidationError)
            assert job.error.field.startswith(f"line {job.line}")
    for number, line in enumerate(lines, start=1):
        # A line with anything visible on it is never dropped silently.
        if any(0x21 <= byte < 0x7F for byte in line):
            assert number in numbers


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_line, min_size=1, max_size=8))
def test_load_jobs_never_raises_on_any_lines(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes]
) -> None:
    """Any lines give, for each non-blank line, a request or an InvalidJob with its number."""
    path = tmp_path_factory.mktemp("jobs") / "jobs.jsonl"
    path.write_bytes(b"\n".join(lines))
    _check_jobs(path, lines)


@settings(max_examples=150, deadline=None)
@given(objects=st.lists(_job_object, min_size=1, max_size=6))
def test_every_valid_looking_object_parses_or_fails_typed(
    tmp_path_factory: pytest.TempPathFactory, objects: list[dict[str, object]]
) -> None:
    """Objects built from the real field names with arbitrary values (surrogates included)."""
    lines = [json.dumps(o).encode() for o in objects]
    path = tmp_path_factory.mktemp("jobs") / "jobs.jsonl"
    path.write_bytes(b"\n".join(lines))
    _check_jobs(path, lines)
    for job in load_jobs(path):
        if not isinstance(job, InvalidJob):
            derive_id(job)  # what the batch hashes and records: never raises for a valid job
