"""A hostile or broken server cannot make the SDK write outside the output directory, leak the
key, exhaust memory with an answer, or hide Files-store results; the caller gets typed errors.

Everything runs through the public API against the fake server on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import xai_images
from xai_images import APIResponseError, ConfigurationError, ValidationError
from xai_images.bulk import load_manifest
from xai_images.testing import FakeXAIServer, Reply, instant_retries

SECRET = "xai-Rt5Yu2Io7Pa4Sd6Fg9Hj1Kl0ZxWqZq8mN3vR7tY2wK5pL9sD4fG6hJ1aX0cBv3Qe8"
MIB = 1024 * 1024

HOSTILE_IDS = [
    "../../escape",
    "/etc/passwd-like",
    "..\\..\\escape",
    "..",
    ".",
    "sub/../../x",
    "C:\\evil",
    "C:evil",
    "con",
    "x" * 600,
    "é" * 300,
    ".hidden",
    "a/b\\c:d*e?f<g>h|i",
]


@pytest.fixture(autouse=True)
def _instant() -> Iterator[None]:
    with instant_retries():
        yield


def _client(server: FakeXAIServer, **options: Any) -> xai_images.AsyncClient:
    return xai_images.AsyncClient(api_key=server.api_key, base_url=server.base_url, **options)


def _files_under(root: Path) -> list[Path]:
    return [Path(d, f) for d, _dirs, files in os.walk(root) for f in files]


def _assert_all_inside(root: Path, out: Path, saved: list[Path]) -> None:
    assert saved
    for path in saved:
        assert path.parent == out, path
        assert len(path.name.encode()) <= 255
    assert sorted(_files_under(root)) == sorted(_files_under(out))


# -- item 7: base_url ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["", " ", "\t\n"])
def test_empty_base_url_is_refused_not_replaced_by_the_live_api(url: str) -> None:
    """base_url="" (or blank) is a ConfigurationError naming base_url, never the default."""
    with pytest.raises(ConfigurationError, match="base_url"):
        xai_images.AsyncClient(api_key="k", base_url=url)


# -- item 2: server values never become paths ----------------------------------------------------


@pytest.mark.parametrize("request_id", HOSTILE_IDS)
@pytest.mark.parametrize("response_format", ["url", "b64_json"])
async def test_hostile_request_id_never_leaves_the_directory(
    fake_xai_server: FakeXAIServer, tmp_path: Path, request_id: str, response_format: str
) -> None:
    """image.save(dir), resp.save(dir) and save_all keep files in dir whatever the id says."""
    server = fake_xai_server
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    server.enqueue(Reply.ok(headers={"x-request-id": request_id}))
    async with _client(server) as client:
        resp = await client.images.generate("x", n=2, response_format=response_format)
        one = await resp.images[0].save(out)
        many = await resp.save(out / "all")
        listed = await client._transfers.save_all(resp.images, out / "listed")
    _assert_all_inside(tmp_path, out, [one.path])
    assert {p.parent for p in (s.path for s in many)} == {out / "all"}
    assert {p.parent for p in (s.path for s in listed)} == {out / "listed"}


@pytest.mark.parametrize("request_id", HOSTILE_IDS[:4])
async def test_hostile_request_id_in_a_bulk_job_stays_in_output_dir(
    fake_xai_server: FakeXAIServer, tmp_path: Path, request_id: str
) -> None:
    """A bulk job saves every image inside output_dir and records relative paths."""
    server = fake_xai_server
    server.enqueue(Reply.ok(headers={"x-request-id": request_id}))
    out = tmp_path / "out"
    async with _client(server) as client:
        outcomes = await client.bulk([{"prompt": "x"}], output_dir=out).collect()
    assert outcomes[0].ok
    assert all(path.parent == out for path in outcomes[0].files)
    assert {p.parent for p in _files_under(tmp_path)} == {out}


@pytest.mark.parametrize("name", ["a\x00b", "{index}\x00", "\x00"])
async def test_nul_in_name_template_is_a_validation_error(
    fake_xai_server: FakeXAIServer, tmp_path: Path, name: str
) -> None:
    """A NUL in the caller's name pattern is a ValidationError naming ``name``."""
    async with _client(fake_xai_server) as client:
        resp = await client.images.generate("x")
        with pytest.raises(ValidationError) as info:
            await resp.save(tmp_path, name=name)
    assert info.value.field == "name"


# -- item 5: bounded answers ---------------------------------------------------------------------


async def _peak_while(coro: Any) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        try:
            await coro
        except BaseException as exc:  # returned to the test, which checks its type
            error: BaseException | None = exc
        else:
            error = None
        return error, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "reply",
    [Reply.bomb(1 << 30), Reply.huge(200_000_000), Reply.huge(200_000_000, announce=False)],
    ids=["bomb", "huge", "huge-chunked"],
)
async def test_oversized_answer_is_refused_within_the_cap(
    fake_xai_server: FakeXAIServer, reply: Reply
) -> None:
    """A gzip bomb or a 200 MB answer raises APIResponseError naming the option; memory stays
    near the cap (cap + 16 MiB of buffers)."""
    cap = 8 * MIB
    fake_xai_server.enqueue(reply)
    async with _client(fake_xai_server, max_answer_bytes=cap) as client:
        error, peak = await _peak_while(client.images.generate("x"))
    assert isinstance(error, APIResponseError)
    assert "max_answer_bytes" in str(error)
    assert peak < cap + 16 * MIB


async def test_answer_below_the_cap_is_read(fake_xai_server: FakeXAIServer) -> None:
    """An answer padded to just below the cap, compressed or not, parses normally."""
    cap = 4 * MIB
    fake_xai_server.enqueue(Reply.huge(cap - 1024), Reply.bomb(cap - 1024))
    async with _client(fake_xai_server, max_answer_bytes=cap) as client:
        for _ in range(2):
            resp = await client.images.generate("x")
            assert len(resp.images) == 1


async def test_answer_with_an_overlong_string_is_a_typed_error(
    fake_xai_server: FakeXAIServer,
) -> None:
    """A 2xx answer with one multi-MB string (not image data) is an APIResponseError."""
    fake_xai_server.enqueue(Reply.error(200, body={"data": [], "junk": "x" * 3_000_000}))
    async with _client(fake_xai_server) as client:
        with pytest.raises(APIResponseError, match="longer than"):
            await client.images.generate("x")


@pytest.mark.parametrize("value", [0, 1023, -1, 2.5, True, "128"])
def test_bad_max_answer_bytes_is_refused(value: object) -> None:
    """max_answer_bytes must be an int >= 1024; the error names it."""
    with pytest.raises(ConfigurationError, match="max_answer_bytes"):
        xai_images.AsyncClient(api_key="k", max_answer_bytes=value)  # type: ignore[arg-type]


def test_default_cap_holds_ten_2k_images_as_base64() -> None:
    """The default cap is above ten ~8 MB (2048x2048 PNG) images as base64."""
    from xai_images._config import DEFAULT_MAX_ANSWER_BYTES

    assert DEFAULT_MAX_ANSWER_BYTES > 10 * 8_000_000 * 4 / 3


# -- item 6: the key appears nowhere -------------------------------------------------------------


def _strings_of(error: BaseException) -> list[str]:
    seen: list[str] = []
    current: BaseException | None = error
    depth = 0
    while current is not None and depth < 10:
        seen += [str(current), repr(current), *map(repr, current.args)]
        for attr in ("headers", "body", "request_id", "code", "message"):
            value = getattr(current, attr, None)
            if value is not None:
                seen.append(repr(value))
                if hasattr(value, "items"):
                    seen += [f"{k}: {v}" for k, v in value.items()]
        current = current.__cause__ or current.__context__
        depth += 1
    return seen


ECHO_HEADERS = {
    "Location": f"https://elsewhere.example/steal?key={SECRET}",
    "x-request-id": SECRET,
    "X-Echo": f"Bearer {SECRET}",
    "Set-Cookie": f"session={SECRET}",
    "Authorization": f"Bearer {SECRET}",
}


@pytest.mark.parametrize("status", [302, 307, 400, 401, 429, 500])
async def test_echoed_key_is_in_no_error_string_or_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """A server echoing the key in Location, headers, body and request id: the error (str,
    repr, args, headers, body, cause chain) and DEBUG logs never contain it."""
    caplog.set_level(logging.DEBUG, logger="xai_images")
    async with FakeXAIServer(api_key=SECRET) as server:
        server.enqueue(
            *[
                Reply.error(status, headers=ECHO_HEADERS, body={"error": f"bad key {SECRET}"})
                for _ in range(3)
            ]
        )
        async with _client(server) as client:
            with pytest.raises(xai_images.APIStatusError) as info:
                await client.images.generate("x")
    strings = _strings_of(info.value)
    assert not [s for s in strings if SECRET in s]
    assert "Set-Cookie" not in info.value.headers
    assert "Authorization" not in info.value.headers
    assert SECRET not in caplog.text
    assert all(SECRET not in repr(r.__dict__) for r in caplog.records)


async def test_echoed_key_in_a_successful_answer_reaches_no_manifest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 200 answer echoing the key (request id, headers): not in the response, logs or manifest."""
    caplog.set_level(logging.DEBUG, logger="xai_images")
    async with FakeXAIServer(api_key=SECRET) as server:
        server.settings.revised_prompt = True
        server.enqueue(Reply.ok(headers=ECHO_HEADERS))
        async with _client(server) as client:
            outcomes = await client.bulk(
                [{"prompt": f"echo {SECRET}"}], output_dir=tmp_path
            ).collect()
    assert outcomes[0].ok
    manifest = (tmp_path / "manifest.jsonl").read_text()
    record = next(iter(load_manifest(tmp_path / "manifest.jsonl").values()))
    # The caller's own prompt is kept as given; no server-sent copy of the key is.
    assert manifest.count(SECRET) == 1
    assert record.request_id is not None
    assert SECRET not in record.request_id
    assert SECRET not in caplog.text


# -- item 9: Files-store output and deferred shapes ----------------------------------------------


async def test_file_output_and_storage_error_are_kept(fake_xai_server: FakeXAIServer) -> None:
    """storage_options sent through extra_body: each image carries its file_output."""
    async with _client(fake_xai_server) as client:
        resp = await client.images.generate(
            "x", n=2, extra_body={"storage_options": {"filename": "fox.png"}}
        )
        failed = await client.images.generate("x", extra_body={"storage_options": {}})
    outputs = [image.file_output for image in resp.images]
    assert all(o is not None and o.file_id and o.file_id.startswith("file-") for o in outputs)
    assert all(o is not None and isinstance(o.expires_at, int) for o in outputs)
    assert all(image.storage_error is None for image in resp.images)
    assert failed.images[0].file_output is None
    assert failed.images[0].storage_error == "storage_options.filename is required"


async def test_deferred_result_keeps_file_output(fake_xai_server: FakeXAIServer) -> None:
    """A deferred request asked for Files-store output returns file_output when done."""
    fake_xai_server.settings.deferred_pending_polls = 0
    async with _client(fake_xai_server) as client:
        deferred = await client.images.generate_deferred(
            "x", extra_body={"storage_options": {"filename": "fox.png"}}
        )
        resp = await deferred.wait(poll_interval=0.01)
    assert resp.images[0].file_output is not None


async def test_fake_deferred_answers_use_the_published_shapes(
    fake_xai_server: FakeXAIServer,
) -> None:
    """The fake's done poll carries request_id; a failed one has error {code, message}."""
    server = fake_xai_server
    server.settings.deferred_pending_polls = 0
    async with _client(server) as client:
        deferred = await client.images.generate_deferred("x")
        done = await client._request("GET", f"/images/{deferred.request_id}", idempotent=True)
        server.settings.deferred_fail = True
        failing = await client.images.generate_deferred("y")
        failed = await client._request("GET", f"/images/{failing.request_id}", idempotent=True)
        with pytest.raises(xai_images.DeferredError, match="Image generation failed"):
            await failing.wait(poll_interval=0.01)
    assert done.body["request_id"] == deferred.request_id
    assert failed.body["error"] == {
        "code": "generation_failed",
        "message": "Image generation failed.",
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("quota exceeded", "quota exceeded"),
        ({"code": "quota", "message": "quota exceeded"}, "quota: quota exceeded"),
        (None, None),
        ("", None),
    ],
)
def test_storage_error_accepts_text_or_an_error_object(raw: object, expected: str | None) -> None:
    """storage_error is kept as text whether the server sends a string or {code, message}."""
    from xai_images._api._models import parse_images_response

    resp = parse_images_response({"data": [{"url": "https://i/x.png", "storage_error": raw}]})
    assert resp.data[0].storage_error == expected


@pytest.mark.parametrize("request_id", HOSTILE_IDS)
def test_image_stem_is_one_safe_component(request_id: str) -> None:
    """GeneratedImage.stem, which callers may build paths from, is a single harmless name."""
    stem = xai_images.GeneratedImage(url="https://x/y.png", request_id=request_id).stem
    assert (Path("/out") / stem).parent == Path("/out")
    assert not stem.startswith(".")
