"""Adversarial end-to-end checks of the SDK's promises, through the public API only.

1. bad input: a typed ``ValidationError`` naming field and limit, before anything is sent;
2. faults: no file under a final name, no ``.part`` leftover, always an ``XAIImagesError``;
3. never pay twice: a lost answer is billed once and reported as ``OutcomeUnknownError``;
4. the API key goes to the API host only: not to downloads, reprs, errors, logs or manifests;
5. large base64 answers are decoded exactly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import xai_images
from xai_images.testing import FakeXAIServer, Reply

# Looks like a real xAI key, so that a leak cannot hide behind a short or common string.
SECRET = "xai-Zq8mN3vR7tY2wK5pL9sD4fG6hJ1aX0cBv3Qe8Rt5Yu2Io7Pa4Sd6Fg9Hj1Kl0ZxWq"
IMAGE_BYTES = 100_000  # over 64 KiB, so that it cannot fit on the tiny tmpfs below
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 64
MIB = 1024 * 1024


pytestmark = pytest.mark.usefixtures("xai_instant_retries")


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Images over 64 KiB; the fake accepts any key."""
    return {"image_bytes": IMAGE_BYTES}


def _options() -> xai_images.DownloadOptions:
    return xai_images.DownloadOptions(
        stall_timeout=0.2, retry=xai_images.RetryPolicy(max_attempts=2)
    )


@pytest.fixture
def xai_client_options() -> dict[str, Any]:
    """A realistic key (to look for leaks) and short download timeouts."""
    return {"api_key": SECRET, "download": _options()}


# A stall the client waits out: the download stays half-written until the test cancels it (with
# the usual 0.2 s stall timeout the client would give up on the stall and finish the download
# before the test sees the .part file, when the machine is busy).
patient = pytest.mark.parametrize(
    "xai_client_options",
    [{"api_key": SECRET, "download": xai_images.DownloadOptions(stall_timeout=60.0)}],
    ids=["patient"],
)


def nothing_sent(server: FakeXAIServer) -> bool:
    return server.ledger.requests_started == 0


def leftovers(directory: Path) -> list[str]:
    """Every file under ``directory`` (relative names), hidden ``.part`` files included."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def full_text(exc: BaseException) -> str:
    """str, repr, args, attributes and notes of an exception and of every exception chained to it.

    This is what a user or a log handler can see of the errors themselves. A formatted traceback
    is not used: it also quotes the test's own source lines, which differ between Python versions.
    """
    parts: list[str] = []
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        notes = getattr(link, "__notes__", [])
        parts += [str(link), repr(link), repr(link.args), repr(vars(link)), *map(str, notes)]
        link = link.__cause__ or link.__context__
    return "\n".join(parts)


def assert_invalid(exc: xai_images.ValidationError, field: str, limit_part: str) -> None:
    assert exc.field == field
    assert limit_part in exc.limit
    message = str(exc)
    assert message.startswith(field + ":")
    assert exc.limit in message


@contextlib.asynccontextmanager
async def fake_and_client(
    client_key: str = SECRET, **server_args: Any
) -> AsyncIterator[tuple[FakeXAIServer, xai_images.AsyncClient]]:
    """A fresh fake server built with ``server_args``, and a client using ``client_key``."""
    async with (
        FakeXAIServer(**server_args) as fake,
        xai_images.AsyncClient(api_key=client_key, base_url=fake.base_url) as api,
    ):
        yield fake, api


def files_containing(directory: Path, needle: bytes) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def wait_for_part(directory: Path) -> None:
    """Wait (bounded) until a ``.part`` file exists: a file-system state nothing can await."""
    for _ in range(500):
        if any(name.endswith(".part") for name in os.listdir(directory)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no .part file appeared in {directory}")


# -- 1. bad input: typed, precise, and nothing sent ----------------------------------------------

GENERATE_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"prompt": ""}, "prompt", "non-empty"),
    ({"prompt": "  \n\t "}, "prompt", "non-empty"),
    ({"prompt": "x" * 10_001}, "prompt", "10,000"),
    ({"prompt": 42}, "prompt", "string"),
    ({"prompt": None}, "prompt", "string"),
    ({"prompt": b"a cat"}, "prompt", "string"),
    ({"n": 0}, "n", "between 1 and 10"),
    ({"n": 11}, "n", "between 1 and 10"),
    ({"n": -1}, "n", "between 1 and 10"),
    ({"n": True}, "n", "between 1 and 10"),
    ({"n": 2.5}, "n", "between 1 and 10"),
    ({"n": "3"}, "n", "between 1 and 10"),
    ({"quality": "ultra"}, "quality", "low, medium, high, auto"),
    ({"quality": "HIGH"}, "quality", "low, medium, high, auto"),
    ({"quality": 1}, "quality", "low, medium, high, auto"),
    ({"response_format": "png"}, "response_format", "url, b64_json"),
    ({"aspect_ratio": "7:3"}, "aspect_ratio", "16:9"),
    ({"resolution": "4k"}, "resolution", "1k, 1.5k, 2k"),
    ({"deferred": True, "response_format": "b64_json"}, "response_format", "url"),
    ({"model": ""}, "model", "non-empty"),
    ({"user": 5}, "user", "string"),
    ({"extra_body": [("n", 1)]}, "extra_body", "mapping"),
]


@pytest.mark.parametrize(("kwargs", "field", "limit"), GENERATE_CASES)
async def test_generate_rejects_bad_argument_before_sending(
    client: xai_images.AsyncClient,
    server: FakeXAIServer,
    kwargs: dict[str, Any],
    field: str,
    limit: str,
) -> None:
    """A bad generate argument raises ValidationError naming field and limit; nothing is sent."""
    args = {"prompt": "a cat", **kwargs}
    prompt = args.pop("prompt")
    # "deferred": True in a case means the deferred method (URL format only).
    deferred = args.pop("deferred", False)
    generate = client.images.generate_deferred if deferred else client.images.generate
    with pytest.raises(xai_images.ValidationError) as info:
        await generate(prompt, **args)
    assert_invalid(info.value, field, limit)
    assert nothing_sent(server)


async def test_overlong_prompt_error_stays_short(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """A 10,001-character prompt is reported by its length, not echoed in full."""
    with pytest.raises(xai_images.ValidationError) as info:
        await client.images.generate("y" * 10_001)
    assert "10001" in str(info.value) or "10,001" in str(info.value)
    assert len(str(info.value)) < 300
    assert nothing_sent(server)


async def test_prompt_of_exactly_the_limit_is_accepted(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """The 10,000-character limit is inclusive: such a prompt is sent and answered."""
    resp = await client.images.generate("z" * 10_000)
    assert len(resp.images) == 1
    assert server.ledger.images_billed == 1


def _png_file(tmp: Path, name: str = "in.png") -> Path:
    path = tmp / name
    path.write_bytes(PNG)
    return path


def _big_file(tmp: Path) -> Path:
    path = tmp / "big.png"
    with open(path, "wb") as fh:
        fh.write(PNG)
        fh.truncate(11 * MIB)  # sparse: instant to make
    return path


def _gif_file(tmp: Path) -> Path:
    path = tmp / "anim.gif"
    path.write_bytes(GIF)
    return path


def _text_file(tmp: Path) -> Path:
    path = tmp / "notes.png"  # an image name, text inside: the bytes decide
    path.write_text("just some text, not an image\n")
    return path


def _big_data_uri() -> str:
    return "data:image/png;base64," + base64.b64encode(PNG + bytes(10 * MIB)).decode()


EditCase = Callable[[Path], dict[str, Any]]
EDIT_CASES: list[tuple[str, EditCase, str, str]] = [
    ("neither", lambda t: {}, "image", "given"),
    ("both", lambda t: {"image": PNG, "images": [PNG]}, "images", "alone"),
    ("six images", lambda t: {"images": [PNG] * 6}, "images", "between 1 and 5"),
    ("empty images", lambda t: {"images": []}, "images", "between 1 and 5"),
    ("missing file", lambda t: {"image": str(t / "nope.png")}, "image", "existing file"),
    ("missing pathlike", lambda t: {"image": t / "nope.png"}, "image", "existing file"),
    ("missing second", lambda t: {"images": [PNG, t / "nope.png"]}, "images[1]", "existing"),
    ("gif file", lambda t: {"image": _gif_file(t)}, "image", "JPEG, PNG or WebP"),
    ("text file", lambda t: {"image": _text_file(t)}, "image", "JPEG, PNG or WebP"),
    ("gif bytes", lambda t: {"image": GIF}, "image", "JPEG, PNG or WebP"),
    ("directory", lambda t: {"image": t}, "image", "file"),
    ("11 MiB file", lambda t: {"image": _big_file(t)}, "image", "10 MiB"),
    ("11 MiB bytes", lambda t: {"image": PNG + bytes(11 * MIB)}, "image", "10 MiB"),
    ("11 MiB file object", lambda t: {"image": open(_big_file(t), "rb")}, "image", "10 MiB"),  # noqa: SIM115
    (
        "gif data URI",
        lambda t: {"image": "data:image/gif;base64," + base64.b64encode(GIF).decode()},
        "image",
        "JPEG, PNG or WebP",
    ),
    ("data URI over 10 MiB", lambda t: {"image": _big_data_uri()}, "image", "10 MiB"),
    ("data URI not base64", lambda t: {"image": "data:image/png,abc"}, "image", "base64"),
    (
        "aspect ratio, one image",
        lambda t: {"image": _png_file(t), "aspect_ratio": "16:9"},
        "aspect_ratio",
        "several images",
    ),
    (
        "aspect ratio, images of one",
        lambda t: {"images": [PNG], "aspect_ratio": "16:9"},
        "aspect_ratio",
        "several images",
    ),
    ("int image", lambda t: {"image": 5}, "image", "a URL"),
    ("bool image", lambda t: {"image": True}, "image", "a URL"),
    ("dict image", lambda t: {"image": {"url": "https://x/y.png"}}, "image", "a URL"),
    ("None in images", lambda t: {"images": [PNG, None]}, "images[1]", "a URL"),
    ("images is a str", lambda t: {"images": "in.png"}, "images", "list"),
    ("images is a set", lambda t: {"images": {"a.png"}}, "images", "list"),
    ("text file object", lambda t: {"image": io.StringIO("abc")}, "image", "binary"),
    ("blank path", lambda t: {"image": "   "}, "image", "a URL"),
    ("bad n with image", lambda t: {"image": PNG, "n": 0}, "n", "between 1 and 10"),
    (
        "deferred b64",
        lambda t: {"image": PNG, "deferred": True, "response_format": "b64_json"},
        "response_format",
        "url",
    ),
]


@pytest.mark.parametrize(
    ("make", "field", "limit"),
    [pytest.param(make, field, limit, id=name) for name, make, field, limit in EDIT_CASES],
)
async def test_edit_rejects_bad_input_before_sending(
    client: xai_images.AsyncClient,
    server: FakeXAIServer,
    tmp_path: Path,
    make: EditCase,
    field: str,
    limit: str,
) -> None:
    """A bad edit input raises ValidationError naming field and limit; nothing is sent."""
    kwargs = make(tmp_path)
    edit = client.images.edit_deferred if kwargs.pop("deferred", False) else client.images.edit
    try:
        with pytest.raises(xai_images.ValidationError) as info:
            await edit("make it blue", **kwargs)
    finally:
        image = kwargs.get("image")
        if isinstance(image, io.IOBase):
            image.close()
    assert_invalid(info.value, field, limit)
    assert nothing_sent(server)


async def test_edit_with_empty_prompt_is_rejected_before_sending(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """An edit with a blank prompt and a valid image raises ValidationError for the prompt."""
    with pytest.raises(xai_images.ValidationError) as info:
        await client.images.edit(" ", image=_png_file(tmp_path))
    assert_invalid(info.value, "prompt", "non-empty")
    assert nothing_sent(server)


@pytest.mark.parametrize("timeout", [-1, 0, "30", True, float("nan"), float("inf")])
async def test_bad_per_call_timeout_is_a_validation_error(
    client: xai_images.AsyncClient, server: FakeXAIServer, timeout: Any
) -> None:
    """A bad per-call timeout raises ValidationError(field="timeout"), not a bare ValueError."""
    with pytest.raises(xai_images.ValidationError) as info:
        await client.images.generate("a cat", timeout=timeout)
    assert info.value.field == "timeout"
    assert nothing_sent(server)


@pytest.mark.parametrize("max_retries", [-1, "2", True])
async def test_bad_per_call_max_retries_is_a_validation_error(
    client: xai_images.AsyncClient, server: FakeXAIServer, max_retries: Any
) -> None:
    """A bad per-call max_retries raises ValidationError(field="max_retries") before sending."""
    with pytest.raises(xai_images.ValidationError) as info:
        await client.images.generate("a cat", max_retries=max_retries)
    assert info.value.field == "max_retries"
    assert nothing_sent(server)


async def test_bad_edit_timeout_is_refused_before_reading_inputs(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """An edit with a bad timeout names the timeout, not the (missing) input file it never read."""
    with pytest.raises(xai_images.ValidationError) as info:
        await client.images.edit("a cat", image=tmp_path / "missing.png", timeout=-5)
    assert info.value.field == "timeout"
    assert nothing_sent(server)


@pytest.mark.parametrize(("field", "value"), [("timeout", "30"), ("max_retries", -1)])
async def test_bad_poll_options_are_validation_errors(
    client: xai_images.AsyncClient, server: FakeXAIServer, field: str, value: Any
) -> None:
    """get_deferred with a bad timeout or max_retries raises ValidationError before polling."""
    with pytest.raises(xai_images.ValidationError) as info:
        await client.images.get_deferred("req-1", **{field: value})
    assert info.value.field == field
    assert nothing_sent(server)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"timeout": 0}, "timeout"), ({"timeout": "10"}, "timeout"), ({"poll_interval": "1"}, None)],
)
async def test_bad_wait_options_are_validation_errors(
    client: xai_images.AsyncClient, server: FakeXAIServer, kwargs: dict[str, Any], field: Any
) -> None:
    """wait_deferred with a bad deadline or interval raises ValidationError, not TypeError."""
    with pytest.raises(xai_images.ValidationError) as info:
        await client.images.wait_deferred("req-1", **kwargs)
    assert info.value.field == (field or "poll_interval")
    assert nothing_sent(server)


async def test_b64_stream_with_negative_chunk_size_never_yields_nothing(
    client: xai_images.AsyncClient,
) -> None:
    """stream(chunk_size=-1) on a b64 image raises ValidationError or yields every byte."""
    resp = await client.images.generate("a cat", response_format="b64_json")
    image = resp.data[0]
    try:
        data = b"".join([chunk async for chunk in image.stream(chunk_size=-1)])
    except xai_images.ValidationError:
        return
    assert data == image.content


async def test_api_key_with_control_characters_is_refused_up_front(
    server: FakeXAIServer,
) -> None:
    """A key with a line break is a ConfigurationError at construction, and nothing is sent."""
    with pytest.raises(xai_images.ConfigurationError) as info:
        async with xai_images.AsyncClient(
            api_key="xai-abc\r\nX-Injected: 1", base_url=server.base_url
        ) as api:
            await api.images.generate("a cat")
    assert "X-Injected" not in full_text(info.value)
    assert nothing_sent(server)


@pytest.mark.parametrize("key", ["xai-a\nb", "xai-a\x00b", "xai-a\x7fb", "xai-\u20acuro"])
def test_api_key_with_header_breaking_characters_is_refused(key: str) -> None:
    """Keys with control or non-latin-1 characters are ConfigurationErrors that do not echo them."""
    with pytest.raises(xai_images.ConfigurationError, match="HTTP header") as info:
        xai_images.AsyncClient(api_key=key)
    assert key not in full_text(info.value)
    assert key.strip()[4:] not in full_text(info.value)


async def test_save_arguments_are_checked_before_downloading(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Bad name/on_exists/concurrency for save raise ValidationError and download nothing."""
    resp = await client.images.generate("a cat", n=2)
    bad_calls = [
        (resp.save(tmp_path, name="{nope}"), "name"),
        (resp.save(tmp_path, name="fixed"), "name"),  # two images, one name
        (resp.save(tmp_path, name="a/{index}"), "name"),
        (resp.save(tmp_path, on_exists="replace"), "on_exists"),  # type: ignore[arg-type]
        (resp.save(tmp_path, concurrency=0), "concurrency"),
        (resp.data[0].save(tmp_path, on_exists="x"), "on_exists"),  # type: ignore[arg-type]
    ]
    for call, field in bad_calls:
        with pytest.raises(xai_images.ValidationError) as info:
            await call
        assert info.value.field == field
    assert server.ledger.downloads() == []
    assert leftovers(tmp_path) == []


BAD_JOB_LINES = [
    ('{"prompt": "x", "n": 11}', "n"),
    ('{"prompt": ""}', "prompt"),
    ('{"prompt": 5}', "prompt"),
    ("[1, 2]", ""),
    ("not json at all", ""),
    ('{"prompt": "a", "colour": "red"}', "colour"),
    ('{"n": 2}', "prompt"),
    ('{"prompt": "a", "image": "missing.png"}', "image"),
    ('{"prompt": "a", "images": []}', "images"),
    ('{"prompt": "a", "images": "in.png"}', "images"),
    ('{"prompt": "a", "image": 5}', "image"),
    ('{"prompt": "a", "n": true}', "n"),
    ('{"prompt": "a", "quality": "ultra"}', "quality"),
    ('{"prompt": "a", "id": "../escape"}', "id"),
    ('{"prompt": "a", "image": "in.png", "aspect_ratio": "1:1"}', "aspect_ratio"),
    ('{"prompt": "a", "response_format": "gif"}', "response_format"),
]


def _write_jobs(tmp_path: Path) -> Path:
    _png_file(tmp_path)
    lines = [line for line, _ in BAD_JOB_LINES] + ['{"prompt": "a good one", "id": "good"}']
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_jobs_reports_every_bad_line_with_its_number(tmp_path: Path) -> None:
    """load_jobs turns each bad line into an InvalidJob whose error names line and field."""
    jobs = xai_images.bulk.load_jobs(_write_jobs(tmp_path))
    assert len(jobs) == len(BAD_JOB_LINES) + 1
    for number, (job, (_, field)) in enumerate(zip(jobs, BAD_JOB_LINES, strict=False), start=1):
        assert isinstance(job, xai_images.bulk.InvalidJob), (number, job)
        assert job.line == number
        assert isinstance(job.error, xai_images.ValidationError)
        assert job.error.field.startswith(f"line {number}")
        assert job.error.field.endswith(field)
    assert isinstance(jobs[-1], xai_images.GenerateRequest)


def test_load_jobs_stop_mode_raises_the_first_bad_line(tmp_path: Path) -> None:
    """load_jobs(on_error="stop") raises a ValidationError for line 1."""
    with pytest.raises(xai_images.ValidationError) as info:
        xai_images.bulk.load_jobs(_write_jobs(tmp_path), on_error="stop")
    assert info.value.field == "line 1: n"


async def test_batch_fails_bad_lines_without_sending_them(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A batch runs only the good line: each bad line is a failed outcome, never sent."""
    outcomes = await client.bulk(_write_jobs(tmp_path), output_dir=tmp_path / "out").collect()
    by_status = {o.id: o.status for o in outcomes}
    assert by_status.pop("good") == "ok"
    assert set(by_status.values()) == {"failed"}
    assert len(by_status) == len(BAD_JOB_LINES)
    failed = [o for o in outcomes if o.status == "failed"]
    assert all(isinstance(o.error, xai_images.ValidationError) for o in failed)
    assert sorted(o.line or 0 for o in failed) == list(range(1, len(BAD_JOB_LINES) + 1))
    assert [r.body["prompt"] for r in server.ledger.api_requests()] == ["a good one"]


async def test_batch_edit_of_a_gif_fails_without_sending(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A batch edit whose input file is a GIF fails with ValidationError and sends nothing."""
    _gif_file(tmp_path)
    jobs = [xai_images.EditRequest("make it blue", image="anim.gif", base_dir=tmp_path, id="e")]
    outcomes = await client.bulk(jobs, output_dir=tmp_path / "out").collect()
    assert [o.status for o in outcomes] == ["failed"]
    assert isinstance(outcomes[0].error, xai_images.ValidationError)
    assert nothing_sent(server)


async def test_batch_refuses_bad_settings_at_once(
    client: xai_images.AsyncClient, tmp_path: Path
) -> None:
    """client.bulk with concurrency=0 or an unknown on_exists raises ValidationError at once."""
    with pytest.raises(xai_images.ValidationError) as info:
        client.bulk([], output_dir=tmp_path, concurrency=0)
    assert info.value.field == "concurrency"
    with pytest.raises(xai_images.ValidationError) as info:
        client.bulk([], output_dir=tmp_path, on_exists="nope")  # type: ignore[arg-type]
    assert info.value.field == "on_exists"


def _non_utf8_jobs(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"prompt": "caf\xe9 au lait"}\n{"prompt": "a good one", "id": "good"}\n')
    return path


def test_load_jobs_reports_a_non_utf8_line(tmp_path: Path) -> None:
    """A job line that is not UTF-8 is a bad line (InvalidJob or ValidationError), not a crash."""
    try:
        jobs = xai_images.bulk.load_jobs(_non_utf8_jobs(tmp_path))
    except xai_images.ValidationError:
        return
    assert isinstance(jobs[0], xai_images.bulk.InvalidJob)
    assert isinstance(jobs[1], xai_images.GenerateRequest)


def test_non_utf8_job_line_names_its_line_and_the_bad_byte(tmp_path: Path) -> None:
    """A non-UTF-8 line becomes InvalidJob with a "line N" ValidationError naming the byte."""
    jobs = xai_images.bulk.load_jobs(_non_utf8_jobs(tmp_path))
    bad = jobs[0]
    assert isinstance(bad, xai_images.bulk.InvalidJob)
    assert bad.error.field == "line 1"
    assert "0xe9" in bad.error.limit
    with pytest.raises(xai_images.ValidationError, match="UTF-8"):
        xai_images.bulk.load_jobs(_non_utf8_jobs(tmp_path), on_error="stop")


async def test_batch_survives_a_non_utf8_line(
    client: xai_images.AsyncClient, tmp_path: Path
) -> None:
    """A batch over a job file with a non-UTF-8 line fails that line and runs the others."""
    outcomes = await client.bulk(_non_utf8_jobs(tmp_path), output_dir=tmp_path / "out").collect()
    assert sorted(o.status for o in outcomes) == ["failed", "ok"]


# -- 2. faults never leave partial files, and are always typed ----------------------------------

DOWNLOAD_FAULTS: list[tuple[str, list[Reply], type[xai_images.XAIImagesError]]] = [
    ("500 twice", [Reply.error(500), Reply.error(500)], xai_images.DownloadError),
    ("503 then 502", [Reply.error(503), Reply.error(502)], xai_images.DownloadError),
    ("truncated twice", [Reply.truncate(), Reply.truncate(0.01)], xai_images.IntegrityError),
    (
        "stalled twice",
        [Reply.stall(0.5, seconds=30), Reply.stall(0.5, seconds=30)],
        xai_images.DownloadStalledError,
    ),
    (
        "stall then abort twice",
        [Reply.stall(0.3, seconds=0.01, abort=True)] * 2,
        xai_images.IntegrityError,
    ),
    ("dropped", [Reply.drop()] * 4, xai_images.DownloadError),
    ("404 expired", [Reply.error(404)], xai_images.ImageExpiredError),
    ("403 expired", [Reply.error(403)], xai_images.ImageExpiredError),
    ("410 gone", [Reply.error(410)], xai_images.ImageExpiredError),
    ("401", [Reply.error(401)], xai_images.DownloadError),
    ("200 but text", [Reply.error(200)], xai_images.IntegrityError),
    ("429 wait too long", [Reply.error(429, retry_after=9999)], xai_images.DownloadError),
    ("truncate, then 500", [Reply.truncate(), Reply.error(500)], xai_images.DownloadError),
]


@pytest.mark.parametrize(
    ("replies", "expected"),
    [pytest.param(replies, exc, id=name) for name, replies, exc in DOWNLOAD_FAULTS],
)
async def test_download_fault_leaves_nothing_and_is_typed(
    client: xai_images.AsyncClient,
    server: FakeXAIServer,
    tmp_path: Path,
    replies: list[Reply],
    expected: type[xai_images.XAIImagesError],
) -> None:
    """A failed download raises its typed error and leaves no file at all, final or .part."""
    resp = await client.images.generate("a fox in snow")
    server.enqueue_download(*replies)
    with pytest.raises(xai_images.XAIImagesError) as info:
        await resp.save(tmp_path / "out")
    assert type(info.value) is expected
    assert leftovers(tmp_path) == []
    assert server.ledger.images_downloaded == 0


async def test_single_image_save_fault_leaves_nothing(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """image.save(path) after truncated attempts leaves neither fox.png nor a .part file."""
    resp = await client.images.generate("a fox in snow")
    server.enqueue_download(Reply.truncate(0.9), Reply.truncate(0.9))
    with pytest.raises(xai_images.IntegrityError):
        await resp.data[0].save(tmp_path / "fox.png")
    assert leftovers(tmp_path) == []


async def test_hung_download_is_a_stall_not_a_wait(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A download that never sends a byte raises DownloadStalledError and leaves nothing."""
    resp = await client.images.generate("a fox in snow")
    server.settings.download_latency = 30
    with pytest.raises(xai_images.DownloadStalledError):
        await resp.save(tmp_path)
    assert leftovers(tmp_path) == []


async def test_expired_url_leaves_nothing(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """An already-expired URL raises ImageExpiredError at once and leaves nothing."""
    server.settings.url_ttl = 0
    resp = await client.images.generate("a fox in snow")
    with pytest.raises(xai_images.ImageExpiredError):
        await resp.save(tmp_path)
    assert leftovers(tmp_path) == []
    assert len(server.ledger.downloads()) == 1  # not retried


async def test_single_use_url_second_save_fails_cleanly(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Saving a single-use URL twice: the second raises ImageExpiredError; the first file stays."""
    server.settings.url_single_use = True
    resp = await client.images.generate("a fox in snow")
    first = await resp.data[0].save(tmp_path / "a.png")
    with pytest.raises(xai_images.ImageExpiredError):
        await resp.data[0].save(tmp_path / "b.png")
    assert leftovers(tmp_path) == ["a.png"]
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256


async def _reference(client: xai_images.AsyncClient, prompt: str) -> bytes:
    """The exact bytes of the first image for ``prompt`` (the fake is deterministic)."""
    resp = await client.images.generate(prompt, response_format="b64_json")
    content = resp.data[0].content
    assert content is not None
    return content


@pytest.mark.parametrize("support_range", [True, False])
async def test_download_recovering_after_faults_is_exact(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path, support_range: bool
) -> None:
    """A save that recovers from a cut body (resumed or restarted) writes the exact bytes."""
    server.settings.support_range = support_range
    client_opts = xai_images.DownloadOptions(
        stall_timeout=0.2, retry=xai_images.RetryPolicy(max_attempts=4)
    )
    async with xai_images.AsyncClient(
        api_key=SECRET, base_url=server.base_url, download=client_opts
    ) as api:
        expected = await _reference(api, "a fox in snow")
        resp = await api.images.generate("a fox in snow")
        server.enqueue_download(Reply.truncate(0.3), Reply.stall(0.6, seconds=30), Reply.drop())
        saved = await resp.data[0].save(tmp_path / "fox")
    assert saved.path.read_bytes() == expected
    assert saved.sha256 == hashlib.sha256(expected).hexdigest()
    assert leftovers(tmp_path) == ["fox.png"]


async def test_stream_failing_after_yielding_raises_typed_error(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """A stream cut after yielding bytes, without Range support, raises a DownloadError."""
    server.settings.support_range = False
    resp = await client.images.generate("a fox in snow")
    server.enqueue_download(Reply.truncate(0.8))
    received: list[bytes] = []

    async def consume() -> None:
        async for chunk in resp.data[0].stream(chunk_size=4096):
            received.append(chunk)

    with pytest.raises(xai_images.DownloadError):
        await consume()
    assert 0 < sum(map(len, received)) < IMAGE_BYTES


async def test_stream_resumed_after_a_cut_yields_exact_bytes(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """A stream cut mid-body resumes with Range and yields exactly the image, no duplicates."""
    expected = await _reference(client, "a fox in snow")
    resp = await client.images.generate("a fox in snow")
    server.enqueue_download(Reply.truncate(0.5))
    data = b"".join([chunk async for chunk in resp.data[0].stream(chunk_size=4096)])
    assert data == expected
    assert any(r.header("Range") for r in server.ledger.downloads())


async def test_partial_failure_keeps_complete_files_and_raises(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """With 3 images and 1 expired download, save raises and the 2 others are complete."""
    resp = await client.images.generate("a fox in snow", n=3)
    server.enqueue_download(Reply.error(404))
    with pytest.raises(xai_images.ImageExpiredError):
        await resp.save(tmp_path)
    files = leftovers(tmp_path)
    assert len(files) == 2
    assert not any(name.endswith(".part") for name in files)
    for name in files:
        assert (tmp_path / name).stat().st_size == IMAGE_BYTES


async def test_target_directory_that_is_a_file(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Saving into a path that is a regular file raises SaveError and leaves it untouched."""
    blocker = tmp_path / "out"
    blocker.write_text("keep me")
    resp = await client.images.generate("a fox in snow", n=2)
    with pytest.raises(xai_images.SaveError) as info:
        await resp.save(blocker)
    assert info.value.path == blocker
    assert blocker.read_text() == "keep me"
    assert leftovers(tmp_path) == ["out"]


@pytest.mark.parametrize("fmt", ["url", "b64_json"])
async def test_parent_that_is_a_file(
    client: xai_images.AsyncClient, tmp_path: Path, fmt: str
) -> None:
    """image.save under a path whose parent is a file raises SaveError, leaves nothing new."""
    (tmp_path / "f").write_text("x")
    resp = await client.images.generate("a fox in snow", response_format=fmt)
    with pytest.raises(xai_images.SaveError):
        await resp.data[0].save(tmp_path / "f" / "sub" / "fox.png")
    assert leftovers(tmp_path) == ["f"]


async def test_collision_keeps_the_existing_file(
    client: xai_images.AsyncClient, tmp_path: Path
) -> None:
    """on_exists="fail" over a different file raises FileCollisionError and keeps the file."""
    (tmp_path / "fox.png").write_bytes(b"precious")
    resp = await client.images.generate("a fox in snow")
    with pytest.raises(xai_images.FileCollisionError) as info:
        await resp.data[0].save(tmp_path / "fox.png")
    assert info.value.path == tmp_path / "fox.png"
    assert (tmp_path / "fox.png").read_bytes() == b"precious"
    assert leftovers(tmp_path) == ["fox.png"]


async def test_failed_overwrite_keeps_the_old_file(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """on_exists="overwrite" with a failing download leaves the old file intact."""
    (tmp_path / "fox.png").write_bytes(b"old version")
    resp = await client.images.generate("a fox in snow")
    server.enqueue_download(Reply.truncate(0.9), Reply.truncate(0.9))
    with pytest.raises(xai_images.IntegrityError):
        await resp.data[0].save(tmp_path / "fox.png", on_exists="overwrite")
    assert (tmp_path / "fox.png").read_bytes() == b"old version"
    assert leftovers(tmp_path) == ["fox.png"]


async def test_unreachable_image_host_is_a_download_error(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """When the image host is gone, save raises DownloadError (not aiohttp's) and leaves nothing."""
    resp = await client.images.generate("a fox in snow")
    await server.stop()
    with pytest.raises(xai_images.DownloadError) as info:
        await resp.save(tmp_path)
    assert not isinstance(info.value.__cause__, xai_images.XAIImagesError)
    assert leftovers(tmp_path) == []


async def test_saving_url_image_after_close_is_typed(server: FakeXAIServer, tmp_path: Path) -> None:
    """Saving a URL image after the client closed raises ClientClosedError, writes nothing."""
    async with xai_images.AsyncClient(api_key=SECRET, base_url=server.base_url) as api:
        resp = await api.images.generate("a fox in snow")
    with pytest.raises(xai_images.ClientClosedError):
        await resp.save(tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("moderation", ["blocked", "empty"])
async def test_moderated_images_are_counted_never_lost_silently(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path, moderation: str
) -> None:
    """Withheld images show in blocked_count, and saving one raises ImageBlockedError."""
    server.settings.moderation = moderation
    resp = await client.images.generate("a fox in snow", n=2)
    assert resp.blocked_count == 2
    assert resp.images == ()
    assert await resp.save(tmp_path) == []
    for image in resp.data:
        with pytest.raises(xai_images.ImageBlockedError):
            await image.save(tmp_path)
    assert leftovers(tmp_path) == []


async def test_moderated_batch_item_is_blocked_not_ok(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A batch item whose images are all withheld ends "blocked" with ImageBlockedError."""
    server.settings.moderation = "blocked"
    jobs = [xai_images.GenerateRequest("a fox in snow", n=2, id="fox")]
    outcomes = await client.bulk(jobs, output_dir=tmp_path).collect()
    assert [o.status for o in outcomes] == ["blocked"]
    assert isinstance(outcomes[0].error, xai_images.ImageBlockedError)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(200, {"status": "ok"}, id="no data field"),
        pytest.param(202, {"request_id": "started-anyway"}, id="202 with a request id"),
        pytest.param(200, {"data": "oops"}, id="data is a string"),
        pytest.param(200, {"data": ["https://img.example/a.png"]}, id="data of strings"),
    ],
)
async def test_unreadable_answer_is_an_error_not_moderation(
    client: xai_images.AsyncClient, server: FakeXAIServer, status: int, body: dict[str, Any]
) -> None:
    """A 2xx answer without a list of image objects raises APIResponseError, not "blocked"."""
    server.enqueue(Reply.error(status, body=body))  # a scripted answer with any status and body
    with pytest.raises(xai_images.APIResponseError):
        await client.images.generate("a fox in snow", n=2)


async def test_long_but_valid_file_name_can_be_saved(
    client: xai_images.AsyncClient, tmp_path: Path
) -> None:
    """A target name of 249 characters (under NAME_MAX 255) is saved, not refused."""
    resp = await client.images.generate("a fox in snow")
    name = "x" * 245 + ".png"
    saved = await resp.data[0].save(tmp_path / name)
    assert saved.path.name == name
    assert leftovers(tmp_path) == [name]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root); skipped where it cannot be mounted."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
            capture_output=True,
            check=False,
        )
    except OSError as exc:
        pytest.skip(f"cannot run mount: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.parametrize("fmt", ["url", "b64_json"])
async def test_full_disk_is_a_save_error_and_leaves_nothing(
    client: xai_images.AsyncClient, tiny_disk: Path, fmt: str
) -> None:
    """A disk that fills up raises SaveError saying so, and leaves no file on it."""
    resp = await client.images.generate("a fox in snow", response_format=fmt)
    with pytest.raises(xai_images.SaveError) as info:
        await resp.save(tiny_disk)
    assert "disk full" in str(info.value)
    assert leftovers(tiny_disk) == []


@patient
async def test_cancelled_save_mid_download_leaves_nothing(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Cancelling resp.save while half the body is written removes the .part file."""
    resp = await client.images.generate("a fox in snow")
    server.enqueue_download(Reply.stall(0.5, seconds=30))
    task = asyncio.ensure_future(resp.save(tmp_path))
    await server.wait_for(lambda ledger: ledger.requests_started == 2)
    await wait_for_part(tmp_path)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(tmp_path) == []


async def test_cancelled_save_as_the_download_starts_leaves_nothing(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Cancelling resp.save as soon as its download reaches the server leaves nothing."""
    resp = await client.images.generate("a fox in snow", n=2)
    server.enqueue_download(Reply.stall(0.5, seconds=30), Reply.stall(0.5, seconds=30))
    task = asyncio.ensure_future(resp.save(tmp_path))
    await server.wait_for(lambda ledger: ledger.requests_started == 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(tmp_path) == []


@patient
async def test_interrupted_batch_resumes_without_paying_again(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A batch cancelled mid-download leaves no partial file; its rerun downloads, not bills."""
    jobs = [xai_images.GenerateRequest("a fox in snow", id="fox")]
    server.enqueue_download(Reply.stall(0.5, seconds=30))

    async def consume() -> list[xai_images.bulk.Outcome]:
        async with client.bulk(jobs, output_dir=tmp_path) as run:
            return [outcome async for outcome in run]

    task = asyncio.ensure_future(consume())
    await server.wait_for(lambda ledger: ledger.requests_started == 2)
    await wait_for_part(tmp_path)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(tmp_path) == ["manifest.jsonl"]
    outcomes = await client.bulk(jobs, output_dir=tmp_path, retry_failed=True).collect()
    assert [o.status for o in outcomes] == ["ok"]
    assert server.ledger.images_billed == 1
    assert leftovers(tmp_path) == ["fox-0.png", "manifest.jsonl"]


# -- 3. never pay twice ---------------------------------------------------------------------------


async def test_dropped_generate_is_billed_once_and_unknown(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """A generate whose connection drops raises OutcomeUnknownError and is not resent."""
    server.enqueue(Reply.drop())
    with pytest.raises(xai_images.OutcomeUnknownError) as info:
        await client.images.generate("a cat", n=2)
    assert info.value.reason == "disconnected"
    assert server.ledger.requests_started == 1
    assert server.ledger.images_billed == 2


async def test_hung_generate_is_billed_once_and_unknown(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """A generate that times out after being billed raises OutcomeUnknownError, not resent."""
    server.enqueue(Reply.hang(30))
    with pytest.raises(xai_images.OutcomeUnknownError) as info:
        await client.images.generate("a cat", timeout=0.2)
    assert info.value.reason == "timeout"
    assert server.ledger.requests_started == 1
    assert server.ledger.images_billed == 1


async def test_dropped_edit_is_billed_once_and_unknown(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """An edit whose connection drops raises OutcomeUnknownError and is not resent."""
    expected = await _reference(client, "source")
    server.ledger.clear()
    server.enqueue(Reply.drop())
    with pytest.raises(xai_images.OutcomeUnknownError):
        await client.images.edit("make it blue", image=expected)
    assert server.ledger.requests_started == 1
    assert server.ledger.images_billed == 1


async def test_dropped_deferred_start_is_unknown(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """A deferred start whose answer is lost raises OutcomeUnknownError and is not resent."""
    server.enqueue(Reply.drop())
    with pytest.raises(xai_images.OutcomeUnknownError):
        await client.images.generate_deferred("a cat")
    assert server.ledger.requests_started == 1


@pytest.mark.parametrize("reply", [Reply.drop(), Reply.hang(30)], ids=["drop", "hang"])
async def test_lost_answer_with_a_user_session_is_billed_once(
    server: FakeXAIServer, reply: Reply
) -> None:
    """With the caller's own aiohttp session, a lost answer is still OutcomeUnknownError."""
    server.enqueue(reply)
    async with aiohttp.ClientSession() as session:
        async with xai_images.AsyncClient(
            api_key=SECRET, base_url=server.base_url, session=session
        ) as api:
            with pytest.raises(xai_images.OutcomeUnknownError):
                await api.images.generate("a cat", timeout=0.2)
        assert not session.closed
    assert server.ledger.requests_started == 1
    assert server.ledger.images_billed == 1


async def test_rate_limits_and_server_errors_are_retried_and_billed_once(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """429, 500, 502, 503, 504 are retried; the one success is the only bill."""
    server.enqueue(
        Reply.error(429, retry_after="1"),
        Reply.error(500),
        Reply.error(502),
        Reply.error(503),
        Reply.error(504),
    )
    resp = await client.images.generate("a cat", max_retries=5)
    assert len(resp.images) == 1
    assert [r.status for r in server.ledger.api_requests()] == [429, 500, 502, 503, 504, 200]
    assert server.ledger.images_billed == 1


async def test_exhausted_retries_raise_typed_error_unbilled(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """Three 503s with default retries raise InternalServerError; nothing is billed."""
    server.enqueue(Reply.error(503), Reply.error(503), Reply.error(503), Reply.ok())
    with pytest.raises(xai_images.InternalServerError):
        await client.images.generate("a cat")
    assert server.ledger.requests_started == 3
    assert server.ledger.images_billed == 0


async def test_long_retry_after_is_raised_not_slept(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """A 429 asking for 120 s raises RateLimitError(retry_after=120) after one request."""
    server.enqueue(Reply.error(429, retry_after="120"))
    with pytest.raises(xai_images.RateLimitError) as info:
        await client.images.generate("a cat")
    assert info.value.retry_after == 120
    assert server.ledger.requests_started == 1


async def test_batch_never_resends_an_unknown_outcome(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A batch item whose answer was lost is "unknown"; reruns (even retry_failed) skip it."""
    jobs = [xai_images.GenerateRequest("a cat", id="cat")]
    server.enqueue(Reply.drop())
    first = await client.bulk(jobs, output_dir=tmp_path).collect()
    assert [o.status for o in first] == ["unknown"]
    again = await client.bulk(jobs, output_dir=tmp_path, retry_failed=True).collect()
    assert [(o.status, o.skipped) for o in again] == [("unknown", True)]
    assert server.ledger.requests_started == 1
    assert server.ledger.images_billed == 1


async def test_batch_cancelled_during_generation_is_never_resent(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A batch cancelled while its billed request hangs records "unknown" and never resends."""
    jobs = [xai_images.GenerateRequest("a cat", id="cat")]
    server.enqueue(Reply.hang(30))

    async def consume() -> list[xai_images.bulk.Outcome]:
        async with client.bulk(jobs, output_dir=tmp_path) as run:
            return [outcome async for outcome in run]

    task = asyncio.ensure_future(consume())
    await server.wait_for(lambda ledger: ledger.images_billed == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    again = await client.bulk(jobs, output_dir=tmp_path, retry_failed=True).collect()
    assert [(o.status, o.skipped) for o in again] == [("unknown", True)]
    assert server.ledger.requests_started == 1
    assert server.ledger.images_billed == 1


# -- 4. the key goes to the API host only --------------------------------------------------------


async def _use_url_images(api: xai_images.AsyncClient, directory: Path) -> None:
    resp = await api.images.generate("a fox in snow", n=3)
    await resp.save(directory)
    await resp.data[0].save(directory / "single.png")
    async for _ in resp.data[1].stream():
        pass
    await resp.data[2].read()


async def test_downloads_never_carry_the_key(
    client: xai_images.AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """save, save_all, stream and read of URL images send no Authorization header."""
    server.enqueue_download(Reply.truncate())  # a retried download must not carry it either
    await _use_url_images(client, tmp_path)
    assert server.ledger.images_downloaded >= 6
    assert server.ledger.downloads_with_auth == 0
    assert all(
        r.header("Authorization") == f"Bearer {SECRET}" for r in server.ledger.api_requests()
    )


async def test_downloads_with_a_user_session_never_carry_the_key(
    server: FakeXAIServer, tmp_path: Path
) -> None:
    """With the caller's aiohttp session, downloads send no Authorization header either."""
    async with (
        aiohttp.ClientSession() as session,
        xai_images.AsyncClient(api_key=SECRET, base_url=server.base_url, session=session) as api,
    ):
        await _use_url_images(api, tmp_path)
    assert server.ledger.images_downloaded >= 6
    assert server.ledger.downloads_with_auth == 0


@pytest.mark.parametrize("name", ["Authorization", "authorization"])
async def test_session_with_default_authorization_is_refused(
    server: FakeXAIServer, name: str
) -> None:
    """A session whose default headers carry a key is refused without echoing the key."""
    async with aiohttp.ClientSession(headers={name: f"Bearer {SECRET}"}) as session:
        with pytest.raises(xai_images.ConfigurationError) as info:
            xai_images.AsyncClient(api_key=SECRET, base_url=server.base_url, session=session)
    assert SECRET not in full_text(info.value)


async def test_reprs_never_show_the_key(
    client: xai_images.AsyncClient, monkeypatch: pytest.MonkeyPatch, server: FakeXAIServer
) -> None:
    """repr/str of clients (explicit or env key), images, responses and runs omit the key."""
    monkeypatch.setenv("XAI_API_KEY", SECRET)
    async with xai_images.AsyncClient(base_url=server.base_url) as from_env:
        resp = await from_env.images.generate("a cat")
        shown = [from_env, client, client.images, resp, resp.data[0], vars(client)]
        shown.append(client.bulk([], output_dir="unused"))
        for thing in shown:
            assert SECRET not in repr(thing)
            assert SECRET not in str(thing)


async def test_api_key_of_a_wrong_type_is_not_echoed() -> None:
    """api_key given as bytes raises ConfigurationError that does not show the bytes."""
    with pytest.raises(xai_images.ConfigurationError) as info:
        xai_images.AsyncClient(api_key=SECRET.encode(), base_url="http://127.0.0.1:1/v1")  # type: ignore[arg-type]
    assert SECRET not in full_text(info.value)


async def test_wrong_key_answer_never_shows_the_key() -> None:
    """A 400 for a wrong key is a BadRequestError whose text, body and headers omit the key."""
    async with fake_and_client(api_key="right-key") as (_, api):
        with pytest.raises(xai_images.BadRequestError) as info:
            await api.images.generate("a cat")
    error = info.value
    assert error.status_code == 400
    assert "API key" in str(error)
    assert SECRET not in full_text(error)
    assert SECRET not in repr(error.body)
    assert SECRET not in repr(dict(error.headers))


async def test_key_echoed_by_the_server_is_redacted(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """An error body that echoes the key (a proxy, say) shows it redacted in the error."""
    server.enqueue(Reply.error(400, body={"code": "bad", "error": f"bad key {SECRET}"}))
    with pytest.raises(xai_images.BadRequestError) as info:
        await client.images.generate("a cat")
    assert SECRET not in full_text(info.value)
    assert SECRET not in repr(info.value.body)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_api_redirect_is_not_followed_with_the_key(
    client: xai_images.AsyncClient, server: FakeXAIServer, status: int
) -> None:
    """An API redirect to another host is not followed: that host never sees a request."""
    async with FakeXAIServer() as elsewhere:
        target = elsewhere.base_url + "/images/generations"
        server.enqueue(Reply.error(status, headers={"Location": target}))
        with pytest.raises(xai_images.APIStatusError) as info:
            await client.images.generate("a cat")
        assert elsewhere.ledger.requests_started == 0
    assert info.value.status_code == status
    assert SECRET not in full_text(info.value)
    assert server.ledger.requests_started == 1


async def _provoke(kind: str, server: FakeXAIServer, api: xai_images.AsyncClient) -> BaseException:
    """Run one failing scenario and return the error it raised."""
    try:
        if kind == "429":
            server.enqueue(Reply.error(429, retry_after="600"))
            await api.images.generate("a cat")
        elif kind == "503":
            server.enqueue(*[Reply.error(503)] * 3)
            await api.images.generate("a cat")
        elif kind == "422":
            await api.images.generate("a cat", extra_body={"style": "vivid"})
        elif kind == "drop":
            server.enqueue(Reply.drop())
            await api.images.generate("a cat")
        elif kind == "hang":
            server.enqueue(Reply.hang(30))
            await api.images.generate("a cat", timeout=0.2)
        elif kind == "refused":
            async with FakeXAIServer() as gone:
                dead_url = gone.base_url
            async with xai_images.AsyncClient(api_key=SECRET, base_url=dead_url) as dead:
                await dead.images.generate("a cat")
        elif kind == "download":
            resp = await api.images.generate("a cat")
            server.enqueue_download(Reply.error(500), Reply.error(500))
            await resp.data[0].read()
        elif kind == "expired":
            server.settings.url_ttl = 0
            resp = await api.images.generate("a cat")
            await resp.data[0].read()
        elif kind == "deferred":
            server.settings.deferred_fail = True
            job = await api.images.generate_deferred("a cat")
            await job.wait(poll_interval=0.01, max_poll_interval=0.01)
        elif kind == "closed":
            await api.aclose()
            await api.images.generate("a cat")
    except BaseException as exc:
        return exc
    raise AssertionError(f"scenario {kind} raised nothing")


ERROR_KINDS = ["429", "503", "422", "drop", "hang", "refused", "download", "expired", "deferred"]


@pytest.mark.parametrize("kind", [*ERROR_KINDS, "closed"])
async def test_no_error_shows_the_key(server: FakeXAIServer, kind: str) -> None:
    """Every provokable error is an XAIImagesError whose text and traceback omit the key."""
    api = xai_images.AsyncClient(api_key=SECRET, base_url=server.base_url, download=_options())
    try:
        error = await _provoke(kind, server, api)
    finally:
        await api.aclose()
    assert isinstance(error, xai_images.XAIImagesError), repr(error)
    assert SECRET not in full_text(error)
    link: BaseException | None = error
    while link is not None:  # chained aiohttp errors may carry request_info with headers
        assert SECRET not in repr(vars(link)), type(link)
        link = link.__cause__ or link.__context__


async def test_debug_logs_never_show_the_key(
    server: FakeXAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG records of a run full of retries and errors never contain the key."""
    caplog.set_level(logging.DEBUG, logger="xai_images")
    async with xai_images.AsyncClient(
        api_key=SECRET, base_url=server.base_url, download=_options()
    ) as api:
        server.enqueue(Reply.error(429, retry_after="1"), Reply.error(500))
        server.enqueue_download(Reply.error(503))
        resp = await api.images.generate("a cat")
        await resp.data[0].read()
        for kind in ERROR_KINDS:
            await _provoke(kind, server, api)
            server.reset()
    async with fake_and_client(api_key="right-key") as (_, wrong):
        with pytest.raises(xai_images.BadRequestError):
            await wrong.images.generate("a cat")
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert any("400" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.__dict__)
    assert SECRET not in caplog.text


async def test_batch_manifest_and_gallery_never_show_the_key(tmp_path: Path) -> None:
    """A batch with ok, failed and unknown items writes no key to the manifest or gallery."""
    async with FakeXAIServer(api_key=SECRET, image_bytes=IMAGE_BYTES) as fake:
        fake.enqueue(Reply.ok(), Reply.error(400, body={"error": f"echo {SECRET}"}), Reply.drop())
        jobs = [xai_images.GenerateRequest(f"job {i}", id=f"job{i}") for i in range(3)]
        async with xai_images.AsyncClient(api_key=SECRET, base_url=fake.base_url) as api:
            outcomes = await api.bulk(jobs, output_dir=tmp_path, concurrency=1).collect()
        async with fake_and_client(api_key="right-key") as (_, wrong):
            await wrong.bulk(
                [xai_images.GenerateRequest("wrong key", id="wrong")], output_dir=tmp_path
            ).collect()
    assert sorted(o.status for o in outcomes) == ["failed", "ok", "unknown"]
    xai_images.bulk.write_gallery(tmp_path)
    manifest = (tmp_path / "manifest.jsonl").read_text()
    assert len(manifest.splitlines()) == 4
    assert SECRET not in manifest
    assert files_containing(tmp_path, SECRET.encode()) == []


# -- 5. large base64 answers ---------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [False, True], ids=["bare", "data-uri"])
async def test_ten_megabyte_b64_image_is_saved_exactly(tmp_path: Path, prefix: bool) -> None:
    """A 10 MB b64_json image (with or without data: prefix) saves byte-exact."""
    async with fake_and_client(image_bytes=10_000_000, b64_prefix=prefix) as (_, api):
        resp = await api.images.generate("a big one", response_format="b64_json")
        image = resp.data[0]
        assert image.content is not None
        saved = await image.save(tmp_path / "big")
        by_url = await (await api.images.generate("a big one")).data[0].read()
    digest = hashlib.sha256(image.content).hexdigest()
    assert saved.sha256 == digest
    assert saved.bytes == len(image.content) == 10_000_000
    assert hashlib.sha256(saved.path.read_bytes()).hexdigest() == digest
    assert image.content == by_url  # decoded bytes equal the served image
    assert leftovers(tmp_path) == [saved.path.name]


async def test_ten_megabyte_b64_stream_yields_exact_bytes() -> None:
    """Streaming a 10 MB b64_json image yields exactly its bytes in bounded chunks."""
    async with fake_and_client(image_bytes=10_000_000, b64_prefix=True) as (_, api):
        resp = await api.images.generate("a big one", response_format="b64_json")
        chunks = [chunk async for chunk in resp.data[0].stream(chunk_size=MIB)]
    assert max(len(c) for c in chunks) <= MIB
    assert (
        hashlib.sha256(b"".join(chunks)).digest()
        == hashlib.sha256(resp.data[0].content or b"").digest()
    )
