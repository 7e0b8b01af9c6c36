"""Response models: lenient parsing, moderation, cost, and the b64 payload placeholders."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from xai_images import (
    APIResponseError,
    ConfigurationError,
    GeneratedImage,
    ImageBlockedError,
    ImagesResponse,
    Usage,
)
from xai_images._api._models import parse_images_response

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


def test_the_documented_answer_parses() -> None:
    """The documented example answer becomes an ImagesResponse with its fields."""
    resp = parse_images_response(
        {
            "data": [
                {
                    "url": "https://imgen.x.ai/a.jpeg",
                    "b64_json": None,
                    "mime_type": "image/jpeg",
                    "revised_prompt": "a cat, detailed",
                }
            ],
            "usage": {"cost_in_usd_ticks": 200_000_000},
        },
        request_id="rid-1",
        requested=1,
    )
    image = resp.data[0]
    assert (image.url, image.mime_type, image.revised_prompt) == (
        "https://imgen.x.ai/a.jpeg",
        "image/jpeg",
        "a cat, detailed",
    )
    assert (image.index, image.request_id, image.source) == (0, "rid-1", "url")
    assert resp.usage == Usage(cost_in_usd_ticks=200_000_000)


def test_unknown_fields_are_ignored() -> None:
    """New fields at any level never break parsing."""
    resp = parse_images_response(
        {"data": [{"url": "u", "shiny": True}], "usage": {"x": 1}, "future": {"a": [1]}}
    )
    assert resp.data[0].url == "u"


def test_nulls_are_tolerated() -> None:
    """null usage, model and created parse as None."""
    resp = parse_images_response({"data": [], "usage": None, "model": None, "created": None})
    assert (resp.data, resp.usage, resp.model, resp.created) == ((), None, None, None)


def test_null_data_is_an_api_response_error_not_moderation() -> None:
    """data: null is an unreadable answer (APIResponseError naming the endpoint), not "blocked"."""
    with pytest.raises(APIResponseError, match="data is null") as info:
        parse_images_response({"data": None}, requested=2, where="POST /images/generations")
    assert (info.value.method, info.value.path) == ("POST", "/images/generations")


def test_image_items_that_are_not_objects_are_an_api_response_error() -> None:
    """A data list of strings raises APIResponseError naming the bad item."""
    with pytest.raises(APIResponseError, match=r"data\[1\] is a str"):
        parse_images_response({"data": [{"url": "u"}, "https://img.example/a.png"]})


def test_server_values_are_plain_strings() -> None:
    """An unheard-of mime_type or model is kept as a string, not rejected."""
    resp = parse_images_response(
        {"data": [{"url": "u", "mime_type": "image/avif"}], "model": "grok-imagine-image-7"}
    )
    assert resp.data[0].mime_type == "image/avif"
    assert resp.model == "grok-imagine-image-7"


def test_an_odd_timestamp_does_not_break_the_images() -> None:
    """A created value that is not a number becomes None instead of failing the parse."""
    resp = parse_images_response({"data": [{"url": "u"}], "created": "yesterday"})
    assert resp.created is None
    assert resp.data[0].url == "u"


def test_a_non_object_body_is_an_api_response_error() -> None:
    """A 2xx body that is not a JSON object raises APIResponseError."""
    with pytest.raises(APIResponseError, match="JSON object"):
        parse_images_response(["not", "an", "object"])


def test_a_data_field_of_the_wrong_type_is_an_api_response_error() -> None:
    """data that is not a list is reported, not a crash later."""
    with pytest.raises(APIResponseError):
        parse_images_response({"data": 5})


def test_cost_in_usd() -> None:
    """10**10 ticks are one dollar; 200,000,000 ticks are two cents, exactly."""
    assert Usage(cost_in_usd_ticks=200_000_000).cost_usd == Decimal("0.02")
    assert Usage(cost_in_usd_ticks=None).cost_usd is None


def test_b64_string_is_decoded_with_or_without_prefix() -> None:
    """A bare base64 string and a data: URI decode to the same bytes."""
    bare = base64.b64encode(PNG).decode()
    for value in (bare, "data:image/png;base64," + bare):
        image = parse_images_response({"data": [{"b64_json": value}]}).data[0]
        assert image.content == PNG
        assert image.source == "b64_json"


def test_b64_placeholders_map_to_scanner_payloads() -> None:
    """{"$payload": i} values take the i-th decoded payload."""
    resp = parse_images_response(
        {"data": [{"b64_json": {"$payload": 1}}, {"b64_json": {"$payload": 0}}]},
        [bytearray(b"zero"), bytearray(b"one")],
    )
    assert [image.content for image in resp.data] == [b"one", b"zero"]


def test_a_placeholder_out_of_range_is_an_api_response_error() -> None:
    """A placeholder without a payload is reported, not an IndexError."""
    with pytest.raises(APIResponseError, match="placeholder"):
        parse_images_response({"data": [{"b64_json": {"$payload": 3}}]}, [])


def test_b64_json_property_is_bare_base64_of_the_bytes() -> None:
    """b64_json re-encodes the bytes, without a data: prefix."""
    image = GeneratedImage(content=PNG)
    assert image.b64_json == base64.b64encode(PNG).decode()
    assert GeneratedImage(url="u").b64_json is None


def test_image_without_url_or_b64_is_blocked() -> None:
    """Neither url nor b64_json means blocked by moderation."""
    resp = parse_images_response(
        {"data": [{"url": None, "b64_json": None, "respect_moderation": False}, {"url": "u"}]},
        requested=2,
    )
    assert resp.data[0].blocked
    assert resp.data[0].source is None
    assert resp.data[0].respect_moderation is False
    assert not resp.data[1].blocked
    assert resp.blocked == (resp.data[0],)
    assert resp.images == (resp.data[1],)
    assert resp.blocked_count == 1


def test_empty_data_counts_the_requested_images_as_blocked() -> None:
    """A 200 with an empty data list reports every requested image as blocked."""
    resp = parse_images_response({"data": []}, requested=3)
    assert resp.data == ()
    assert resp.blocked_count == 3


def test_string_flags_are_read_as_booleans() -> None:
    """respect_moderation "false" is False, not truthy."""
    image = parse_images_response({"data": [{"url": "u", "respect_moderation": "false"}]}).data[0]
    assert image.respect_moderation is False


async def test_blocked_image_save_raises_image_blocked() -> None:
    """Saving, streaming or reading a blocked image raises ImageBlockedError."""
    image = GeneratedImage(index=2, request_id="rid")
    with pytest.raises(ImageBlockedError, match="moderation"):
        await image.save("x.png")
    with pytest.raises(ImageBlockedError):
        image.stream()
    with pytest.raises(ImageBlockedError):
        await image.read()


async def test_read_of_b64_image_needs_no_client() -> None:
    """read() of an image with bytes returns them without network access."""
    assert await GeneratedImage(content=PNG).read() == PNG


async def test_detached_objects_say_they_need_a_client() -> None:
    """A hand-built URL image or response cannot download: a clear ConfigurationError."""
    with pytest.raises(ConfigurationError, match="client"):
        await GeneratedImage(url="https://example.com/a.png").save("a.png")
    with pytest.raises(ConfigurationError, match="client"):
        await ImagesResponse().save(".")


def test_equality_ignores_private_fields() -> None:
    """Two images with the same public fields are equal; bytes and client are not in the repr."""
    a = GeneratedImage(url="u", content=b"1")
    assert a == GeneratedImage(url="u", content=b"2")
    assert "content" not in repr(a)


def test_stem_defaults_to_request_id_and_index() -> None:
    """The default file stem is {request_id}-{index}, or image-{index} without an id."""
    assert GeneratedImage(index=3, request_id="rid").stem == "rid-3"
    assert GeneratedImage(index=0).stem == "image-0"
