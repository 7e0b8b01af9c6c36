"""Client-side validation: each rule names the field, the value and the limit."""

from __future__ import annotations

import base64
import contextlib
import io
from typing import Any

import pytest

from xai_images import (
    APIStatusError,
    AsyncClient,
    EditRequest,
    FileId,
    GenerateRequest,
    ValidationError,
)
from xai_images._api._requests import ASPECT_RATIOS
from xai_images.testing import FakeXAIServer


def generate_body(prompt: Any, *, deferred: bool = False, **fields: Any) -> dict[str, Any]:
    return GenerateRequest(prompt, **fields).to_body(deferred=deferred)


def edit_body(prompt: Any, **fields: Any) -> dict[str, Any]:
    """The body of an edit whose inputs are already the image objects given."""
    image, images = fields.pop("image", None), fields.pop("images", None)
    request = EditRequest(prompt, image=image, images=images, **fields)
    return request.to_body([image] if image is not None else list(images or ()))


def check_edit_inputs(image: Any, images: Any) -> None:
    EditRequest("x", image=image, images=images).check()


URL = {"url": "https://example.com/a.png"}


def test_only_set_fields_are_sent() -> None:
    """A bare prompt gives a body with the prompt alone."""
    assert generate_body("a cat") == {"prompt": "a cat"}


def test_every_named_field_is_passed_through() -> None:
    """Each named argument becomes the field of the same name."""
    body = generate_body(
        "a cat",
        model="grok-imagine-image",
        n=4,
        quality="high",
        response_format="b64_json",
        aspect_ratio="16:9",
        resolution="2k",
        user="u-1",
    )
    assert body == {
        "prompt": "a cat",
        "model": "grok-imagine-image",
        "n": 4,
        "quality": "high",
        "response_format": "b64_json",
        "aspect_ratio": "16:9",
        "resolution": "2k",
        "user": "u-1",
    }


def test_extra_body_adds_fields_and_wins_on_collision() -> None:
    """extra_body is merged last: new fields are added and a colliding key overrides."""
    body = generate_body("a cat", quality="low", extra_body={"quality": "ultra", "seed": 7})
    assert body == {"prompt": "a cat", "quality": "ultra", "seed": 7}


def test_extra_body_must_be_a_mapping() -> None:
    """A non-mapping extra_body is a ValidationError."""
    with pytest.raises(ValidationError) as info:
        generate_body("a cat", extra_body=[("a", 1)])  # type: ignore[arg-type]
    assert info.value.field == "extra_body"


def test_any_model_name_is_accepted() -> None:
    """Model names are not restricted: new models appear."""
    assert generate_body("x", model="grok-imagine-image-9000")["model"] == "grok-imagine-image-9000"


@pytest.mark.parametrize("prompt", ["", "   ", None, 42])
def test_empty_or_non_string_prompt(prompt: Any) -> None:
    """An empty, blank or non-string prompt is rejected on the prompt field."""
    with pytest.raises(ValidationError) as info:
        generate_body(prompt)
    assert info.value.field == "prompt"


def test_prompt_limit_is_10000_characters() -> None:
    """10,000 characters pass; 10,001 fail with the limit in the message."""
    assert generate_body("x" * 10_000)
    with pytest.raises(ValidationError, match="10,000") as info:
        generate_body("x" * 10_001)
    assert info.value.field == "prompt"
    assert "10001" in str(info.value)


@pytest.mark.parametrize("n", [0, 11, -1, True, 2.0, "3"])
def test_n_outside_1_to_10(n: Any) -> None:
    """n must be an int (not a bool) between 1 and 10."""
    with pytest.raises(ValidationError, match="between 1 and 10") as info:
        generate_body("x", n=n)
    assert (info.value.field, info.value.value) == ("n", n)


@pytest.mark.parametrize("n", [1, 10])
def test_n_bounds_are_inclusive(n: int) -> None:
    """1 and 10 are valid."""
    assert generate_body("x", n=n)["n"] == n


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quality", "ultra"),
        ("response_format", "png"),
        ("aspect_ratio", "5:4"),
        ("resolution", "4k"),
    ],
)
def test_unknown_enum_values(field: str, value: str) -> None:
    """Unknown quality, response_format, aspect_ratio, resolution name the field and value."""
    with pytest.raises(ValidationError) as info:
        generate_body("x", **{field: value})
    assert info.value.field == field
    assert info.value.value == value
    assert "one of" in info.value.limit


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_every_documented_aspect_ratio_is_accepted(ratio: str) -> None:
    """All aspect ratios from API-FACTS pass."""
    assert generate_body("x", aspect_ratio=ratio)["aspect_ratio"] == ratio


def test_auto_quality_is_accepted() -> None:
    """The live API's "auto" quality passes."""
    assert generate_body("x", quality="auto")["quality"] == "auto"


def test_deferred_is_sent_only_when_true() -> None:
    """deferred=True adds the field; the default leaves it out."""
    assert generate_body("x", deferred=True)["deferred"] is True
    assert "deferred" not in generate_body("x")


def test_deferred_requires_url_format() -> None:
    """deferred with b64_json is rejected: the API defers URLs only."""
    with pytest.raises(ValidationError) as info:
        generate_body("x", deferred=True, response_format="b64_json")
    assert info.value.field == "response_format"


def test_user_must_be_a_string() -> None:
    """A non-string user is rejected."""
    with pytest.raises(ValidationError) as info:
        generate_body("x", user=5)  # type: ignore[arg-type]
    assert info.value.field == "user"


def test_edit_body_with_one_image() -> None:
    """An edit of one image sends the image object under "image"."""
    assert edit_body("add a hat", image=URL) == {"prompt": "add a hat", "image": URL}


def test_edit_body_with_several_images_and_aspect_ratio() -> None:
    """Several images go under "images"; aspect_ratio is allowed then."""
    body = edit_body("merge", images=[URL, {"file_id": "file-1"}], aspect_ratio="1:1")
    assert body["images"] == [URL, {"file_id": "file-1"}]
    assert body["aspect_ratio"] == "1:1"


def test_edit_aspect_ratio_with_one_image_is_rejected() -> None:
    """aspect_ratio is only for edits combining several images."""
    with pytest.raises(ValidationError) as info:
        edit_body("x", image=URL, aspect_ratio="1:1")
    assert info.value.field == "aspect_ratio"


def test_edit_image_and_images_are_exclusive() -> None:
    """Passing both image and images is rejected."""
    with pytest.raises(ValidationError, match="alone"):
        check_edit_inputs("a.png", ["b.png"])


def test_edit_needs_an_input() -> None:
    """Passing neither image nor images is rejected."""
    with pytest.raises(ValidationError) as info:
        check_edit_inputs(None, None)
    assert info.value.field == "image"


@pytest.mark.parametrize("count", [0, 6])
def test_edit_images_count_is_1_to_5(count: int) -> None:
    """images must hold 1 to 5 items."""
    with pytest.raises(ValidationError, match="between 1 and 5") as info:
        check_edit_inputs(None, ["a.png"] * count)
    assert info.value.field == "images"


def test_edit_images_must_be_a_list_not_a_string() -> None:
    """A single string passed as images is rejected rather than split into characters."""
    with pytest.raises(ValidationError, match="list"):
        check_edit_inputs(None, "a.png")


def test_edit_body_rejects_a_malformed_image_object() -> None:
    """An image object must be {"url": ...} or {"file_id": ...}; the index is named."""
    with pytest.raises(ValidationError) as info:
        edit_body("x", images=[URL, {"path": "a.png"}])
    assert info.value.field == "images[1]"


def test_validation_error_is_also_a_value_error() -> None:
    """Callers catching ValueError still catch validation errors."""
    with pytest.raises(ValueError, match="n"):
        generate_body("x", n=0)


# -- edit inputs ---------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


async def sent_image(client: AsyncClient, server: FakeXAIServer, image: Any) -> Any:
    """The image object that an edit of ``image`` sends, read from the fake's ledger."""
    with contextlib.suppress(APIStatusError):  # the fake may refuse it; the body is recorded
        await client.images.edit("x", image=image)
    return server.ledger.api_requests()[-1].body["image"]


async def test_data_uri_of_another_type_is_rejected(client: AsyncClient) -> None:
    """A data URI must declare JPEG, PNG or WebP."""
    with pytest.raises(ValidationError, match="JPEG, PNG or WebP") as info:
        await client.images.edit("x", images=["data:image/gif;base64,R0lGODlh"])
    assert info.value.field == "images[0]"


async def test_data_uri_typed_image_jpg_is_accepted_as_jpeg(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """A data URI typed image/jpg (a common alias of image/jpeg) is accepted and sent as given."""
    uri = "data:image/jpg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 32).decode()
    assert await sent_image(client, server, uri) == {"url": uri}


async def test_data_uri_over_10_mib_is_rejected_without_decoding(client: AsyncClient) -> None:
    """A data URI whose base64 length means more than 10 MiB is rejected."""
    payload = "iVBORw0KGgo" + "A" * (14 * 1024 * 1024)
    with pytest.raises(ValidationError, match="10 MiB"):
        await client.images.edit("x", image="data:image/png;base64," + payload)


async def test_data_uri_must_be_base64(client: AsyncClient) -> None:
    """A data URI without ;base64 or with bytes that are not an image is rejected."""
    with pytest.raises(ValidationError, match="base64"):
        await client.images.edit("x", image="data:image/png,raw")
    with pytest.raises(ValidationError, match="decoded bytes"):
        await client.images.edit("x", image="data:image/png;base64,AAAAAAAAAAAAAAAAAAAAAAAA")


async def test_text_mode_file_is_rejected(client: AsyncClient) -> None:
    """A file object opened in text mode is rejected with a hint to use 'rb'."""
    with pytest.raises(ValidationError, match="'rb'"):
        await client.images.edit("x", image=io.StringIO("not bytes"))  # type: ignore[arg-type]


async def test_file_id_is_sent_as_file_id(client: AsyncClient, server: FakeXAIServer) -> None:
    """FileId becomes {"file_id": ...}; a plain string never does."""
    assert await sent_image(client, server, FileId("file-123")) == {"file_id": "file-123"}
    with pytest.raises(ValidationError, match="not found"):
        await client.images.edit("x", image="file-123")


def test_empty_file_id_is_rejected() -> None:
    """FileId("") is a ValidationError."""
    with pytest.raises(ValidationError):
        FileId("")


async def test_unsupported_input_type_is_rejected(client: AsyncClient) -> None:
    """An int is not an image input."""
    with pytest.raises(ValidationError, match="FileId"):
        await client.images.edit("x", image=42)  # type: ignore[arg-type]


async def test_bytes_become_a_sniffed_data_uri(client: AsyncClient, server: FakeXAIServer) -> None:
    """Raw PNG bytes become a data:image/png URI of their base64."""
    result = await sent_image(client, server, bytearray(PNG))
    assert result == {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}


def test_upload_urls_must_match_n() -> None:
    """`output.upload_urls` sent through extra_body needs exactly n entries, before sending."""
    ok = generate_body("a cat", n=2, extra_body={"output": {"upload_urls": ["u1", "u2"]}})
    assert ok["output"]["upload_urls"] == ["u1", "u2"]
    with pytest.raises(ValidationError) as info:
        generate_body("a cat", n=2, extra_body={"output": {"upload_urls": ["u1"]}})
    assert info.value.field == "output.upload_urls"
    assert "exactly n (2)" in str(info.value)
