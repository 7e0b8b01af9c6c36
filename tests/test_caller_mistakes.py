"""Caller mistakes in text and edit inputs give a typed ValidationError naming the field, unsent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from xai_images import AsyncClient, ValidationError, XAIImagesError
from xai_images._ui._cli import EXIT_USAGE, main
from xai_images.testing import FakeXAIServer
from xai_images.testing._imagegen import image_data


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Small images keep these runs quick."""
    return {"image_bytes": 256}


# Each string field that reaches the body, with a lone surrogate, and the field the error names.
UNENCODABLE: dict[str, tuple[dict[str, Any], str]] = {
    "prompt": ({"prompt": "a cat \ud800"}, "prompt"),
    "prompt, low surrogate": ({"prompt": "\udfff"}, "prompt"),
    "model": ({"prompt": "x", "model": "grok\udc80"}, "model"),
    "user": ({"prompt": "x", "user": "\ud83d"}, "user"),
    "extra_body key": ({"prompt": "x", "extra_body": {"k\ud800": 1}}, "extra_body key"),
    "extra_body value": ({"prompt": "x", "extra_body": {"style": "\ud800"}}, "extra_body['style']"),
    "extra_body nested value": (
        {"prompt": "x", "extra_body": {"a": [{"b": "\udc00"}]}},
        "extra_body['a'][0]['b']",
    ),
}


@pytest.mark.parametrize(("kwargs", "field"), UNENCODABLE.values(), ids=UNENCODABLE.keys())
async def test_generate_refuses_text_without_utf8_form(
    client: AsyncClient, server: FakeXAIServer, kwargs: dict[str, Any], field: str
) -> None:
    """A lone surrogate in any string field raises ValidationError naming it; nothing is sent."""
    with pytest.raises(ValidationError, match="UTF-8") as info:
        await client.images.generate(**kwargs)
    assert info.value.field == field
    assert isinstance(info.value, XAIImagesError)
    assert server.ledger.requests == []


@pytest.mark.parametrize(("kwargs", "field"), UNENCODABLE.values(), ids=UNENCODABLE.keys())
async def test_edit_refuses_text_without_utf8_form(
    client: AsyncClient, server: FakeXAIServer, kwargs: dict[str, Any], field: str
) -> None:
    """The same holds for an edit, before its input is read."""
    with pytest.raises(ValidationError, match="UTF-8") as info:
        await client.images.edit(image=image_data("png", 64, 0), **kwargs)
    assert info.value.field == field
    assert server.ledger.requests == []


async def test_surrogate_error_says_where(client: AsyncClient) -> None:
    """The message gives the position of the first bad character."""
    with pytest.raises(ValidationError, match="at index 4"):
        await client.images.generate("abcd\ud800efg")


async def test_extra_body_nested_too_deep_is_refused(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """An extra_body nested past the limit is a ValidationError, not a RecursionError later."""
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(ValidationError, match="levels deep") as info:
        await client.images.generate("x", extra_body={"a": deep})
    assert info.value.field == "extra_body"
    assert server.ledger.requests == []


async def test_extra_body_within_the_depth_limit_is_sent(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """Ordinary nesting (an output object with a list of URLs) still goes through."""
    await client.images.generate("x", extra_body={"output": {"a": [{"b": [1]}]}})
    assert len(server.ledger.requests) == 1


async def test_an_int_too_long_to_print_is_still_a_validation_error(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """n=10**5000 cannot even be repr()-ed; the error is still typed and names n."""
    with pytest.raises(ValidationError) as info:
        await client.images.generate("x", n=10**5000)
    assert info.value.field == "n"
    assert server.ledger.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///tmp/a.png",
        "file:relative.png",
        "ftp://example.com/a.png",
        "s3://bucket/a.png",
        "gs://bucket/a.png",
        "ssh://host/a.png",
        "javascript://x",
    ],
)
async def test_edit_refuses_unsupported_url_schemes(
    client: AsyncClient, server: FakeXAIServer, url: str
) -> None:
    """A URL of another scheme than http(s) says the scheme is unsupported, not "not found"."""
    with pytest.raises(ValidationError, match="scheme") as info:
        await client.images.edit("x", image=url)
    assert info.value.field == "image"
    assert "unsupported" in str(info.value)
    assert "not found" not in str(info.value)
    assert server.ledger.requests == []


async def test_images_list_names_the_bad_entry(client: AsyncClient, server: FakeXAIServer) -> None:
    """In images=[...] the error names the entry with the unsupported scheme."""
    png = image_data("png", 64, 0)
    with pytest.raises(ValidationError, match="unsupported") as info:
        await client.images.edit("x", images=[png, "ftp://h/a.png"])
    assert info.value.field == "images[1]"
    assert server.ledger.requests == []


async def test_a_windows_style_drive_is_still_a_path(client: AsyncClient) -> None:
    """A one-letter scheme is a drive letter: read as a path (and reported missing), not a URL."""
    with pytest.raises(ValidationError, match="not found"):
        await client.images.edit("x", image="C://no/such/file.png")


async def test_a_path_object_is_never_read_as_a_url(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A Path whose name looks like a URL is a local file: a Path is how to ask for one."""
    odd = tmp_path / "ftp:" / "a.png"
    odd.parent.mkdir()
    odd.write_bytes(image_data("png", 64, 0))
    await client.images.edit("x", image=odd)
    assert len(server.ledger.requests) == 1


@pytest.mark.parametrize(
    ("image", "rule"),
    [
        ("~no-such-user-xyz/a.png", "usable local path"),
        ("a" * 5000 + ".png", "readable local file"),
        ("a\x00b.png", "readable local file"),
    ],
    ids=["unknown home", "name too long", "NUL"],
)
async def test_unusable_local_paths_are_validation_errors(
    client: AsyncClient, server: FakeXAIServer, image: str, rule: str
) -> None:
    """Paths the OS cannot even look up are refused as ValidationError naming the field."""
    with pytest.raises(ValidationError, match=rule) as info:
        await client.images.edit("x", image=image)
    assert info.value.field == "image"
    assert server.ledger.requests == []


async def test_http_and_https_inputs_are_still_sent(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """The scheme check lets http(s) URLs through."""
    await client.images.edit("x", image="https://example.com/a.png")
    assert len(server.ledger.requests) == 1


async def test_an_input_url_without_utf8_form_is_refused(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """An input URL with a lone surrogate is refused before sending, naming the input."""
    with pytest.raises(ValidationError, match="UTF-8") as info:
        await client.images.edit("x", images=["https://h/a.png", "https://h/\ud800.png"])
    assert info.value.field == "images[1]"
    assert server.ledger.requests == []


async def test_scheme_is_refused_before_any_input_is_read(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """An unsupported scheme in images[1] fails even when images[0] is a missing file."""
    with pytest.raises(ValidationError, match="unsupported") as info:
        await client.images.edit("x", images=["/no/such/file.png", "ftp://h/a.png"])
    assert info.value.field == "images[1]"
    assert server.ledger.requests == []


@pytest.mark.parametrize(
    "argv",
    [
        ["edit", "x", "--image", "file:///etc/passwd"],
        ["generate", "a \udc80 cat"],  # what a non-UTF-8 argument becomes in sys.argv
        ["generate", "x", "--user", "\udcff"],
    ],
    ids=["file scheme", "prompt", "user"],
)
async def test_cli_reports_the_mistake_and_sends_nothing(
    server: FakeXAIServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
) -> None:
    """The command exits 2 with the field's error; the fake server saw no request."""
    monkeypatch.setenv("XAI_API_KEY", server.api_key)
    monkeypatch.setenv("XAI_BASE_URL", server.base_url)
    monkeypatch.chdir(tmp_path)
    assert await asyncio.to_thread(main, argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unsupported" in err or "UTF-8" in err
    assert server.ledger.requests == []
