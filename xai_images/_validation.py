"""Client-side checks and request-body building, before anything is sent.

The functions are pure (no I/O) so that the bulk engine can validate every line of a job file
before the first request. Only the fields a caller set end up in the body: the live API rejects
unknown or unsupported fields (API-FACTS.md), and server-side defaults change over time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import ValidationError

__all__ = [
    "ASPECT_RATIOS",
    "MAX_EDIT_IMAGES",
    "MAX_IMAGE_BYTES",
    "MAX_N",
    "MAX_PROMPT_CHARS",
    "PENDING_INPUT",
    "QUALITIES",
    "RESOLUTIONS",
    "RESPONSE_FORMATS",
    "check_edit_inputs",
    "edit_body",
    "generate_body",
]

MAX_PROMPT_CHARS = 10_000
"""Longest prompt the API accepts, in characters."""
MAX_N = 10
"""Most images one request may ask for."""
MAX_EDIT_IMAGES = 5
"""Most input images one edit may combine (``images=[...]``)."""
MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""Largest input image (decoded bytes) an edit may send."""
QUALITIES = ("low", "medium", "high", "auto")
RESPONSE_FORMATS = ("url", "b64_json")
ASPECT_RATIOS = (
    "1:1",
    "3:4",
    "4:3",
    "9:16",
    "16:9",
    "2:3",
    "3:2",
    "9:19.5",
    "19.5:9",
    "9:20",
    "20:9",
    "1:2",
    "2:1",
    "21:9",
    "5:2",
    "auto",
)
RESOLUTIONS = ("1k", "1.5k", "2k")


# Stands in for edit inputs that are not resolved yet, so the other fields of an edit can be
# checked before any local file is read.
PENDING_INPUT = {"url": "https://placeholder.invalid/image.png"}


def _one_of(field: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(field, value, "one of " + ", ".join(allowed))
    return value


def _text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, value, "a non-empty string")
    return value


def _prompt(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("prompt", prompt, "a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        # The value is shortened in the message; the length is what matters.
        raise ValidationError(
            "prompt",
            f"<{len(prompt)} characters>",
            f"at most {MAX_PROMPT_CHARS:,} characters",
        )
    return prompt


def _common(
    prompt: object,
    *,
    model: str | None,
    n: int | None,
    quality: str | None,
    response_format: str | None,
    resolution: str | None,
    user: str | None,
    deferred: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": _prompt(prompt)}
    if model is not None:
        # Not restricted to a known list: new models appear, old names are aliased.
        body["model"] = _text("model", model)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise ValidationError("n", n, f"an int between 1 and {MAX_N}")
        body["n"] = n
    if quality is not None:
        body["quality"] = _one_of("quality", quality, QUALITIES)
    if response_format is not None:
        body["response_format"] = _one_of("response_format", response_format, RESPONSE_FORMATS)
    if resolution is not None:
        body["resolution"] = _one_of("resolution", resolution, RESOLUTIONS)
    if user is not None:
        if not isinstance(user, str):
            raise ValidationError("user", user, "a string")
        body["user"] = user
    if not isinstance(deferred, bool):
        raise ValidationError("deferred", deferred, "True or False")
    if deferred:
        if response_format == "b64_json":
            raise ValidationError(
                "deferred", deferred, 'used with response_format="url" (the API only defers URLs)'
            )
        body["deferred"] = True
    return body


def _merge_extra(body: dict[str, Any], extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
    if extra_body is None:
        return body
    if not isinstance(extra_body, Mapping):
        raise ValidationError("extra_body", extra_body, "a mapping of field names to JSON values")
    for key in extra_body:
        if not isinstance(key, str):
            raise ValidationError("extra_body", key, "a mapping with string keys")
    # Merged last on purpose: a key that collides with a named argument wins, so callers can
    # send a value this SDK would reject (a new quality, say) without waiting for a release.
    body.update(extra_body)
    _check_upload_urls(body)
    return body


def _check_upload_urls(body: Mapping[str, Any]) -> None:
    # The live API wants exactly one signed URL per image; a mismatch would be a paid 400.
    output = body.get("output")
    if not isinstance(output, Mapping) or "upload_urls" not in output:
        return
    urls = output["upload_urls"]
    n = body.get("n", 1)
    if not isinstance(urls, list) or len(urls) != n:
        raise ValidationError(
            "output.upload_urls", urls, f"a list of exactly n ({n}) signed URLs, one per image"
        )


def generate_body(
    prompt: str,
    *,
    model: str | None = None,
    n: int | None = None,
    quality: str | None = None,
    response_format: str | None = None,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    user: str | None = None,
    deferred: bool = False,
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check the arguments of a generation and return its JSON body.

    Only arguments that are not ``None`` become fields. ``extra_body`` is merged last: its keys
    are sent as given and win over a named argument of the same name (that is how to send a
    field or a value this SDK does not know yet; it is not validated).

    Raises:
        ValidationError: naming the field, the value and the rule (e.g. ``n`` outside 1-10, an
            empty or over-long prompt, an unknown ``quality``, ``deferred`` with ``b64_json``).
    """
    body = _common(
        prompt,
        model=model,
        n=n,
        quality=quality,
        response_format=response_format,
        resolution=resolution,
        user=user,
        deferred=deferred,
    )
    if aspect_ratio is not None:
        body["aspect_ratio"] = _one_of("aspect_ratio", aspect_ratio, ASPECT_RATIOS)
    return _merge_extra(body, extra_body)


def check_edit_inputs(image: object, images: object) -> None:
    """Check the shape of an edit's inputs without reading them: exactly one of ``image`` and
    ``images``, and ``images`` a list of 1 to 5 items.

    Raises:
        ValidationError: both or neither given, ``images`` not a list/tuple, empty, or too long.
    """
    if image is not None and images is not None:
        raise ValidationError("images", "<image and images>", "given alone: pass image= or images=")
    if image is None and images is None:
        raise ValidationError("image", None, "given: pass image= (one input) or images= (several)")
    if images is not None:
        if isinstance(images, (str, bytes, bytearray, memoryview)) or not isinstance(
            images, Sequence
        ):
            raise ValidationError("images", images, "a list of images")
        if not 1 <= len(images) <= MAX_EDIT_IMAGES:
            raise ValidationError(
                "images", f"<{len(images)} images>", f"between 1 and {MAX_EDIT_IMAGES} images"
            )


def _image_object(field: str, value: object) -> dict[str, str]:
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, item),) = value.items()
        if key in ("url", "file_id") and isinstance(item, str) and item:
            return {key: item}
    raise ValidationError(field, value, 'an image object: {"url": ...} or {"file_id": ...}')


def edit_body(
    prompt: str,
    *,
    image: Mapping[str, str] | None = None,
    images: Sequence[Mapping[str, str]] | None = None,
    model: str | None = None,
    n: int | None = None,
    quality: str | None = None,
    response_format: str | None = None,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    user: str | None = None,
    deferred: bool = False,
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check the arguments of an edit and return its JSON body.

    ``image`` / ``images`` are already-resolved image objects (``{"url": ...}`` with a URL or a
    data URI, or ``{"file_id": ...}``); turning paths, bytes and files into them is
    ``_inputs.resolve_image``'s job. Same field rules and ``extra_body`` merge as
    :func:`generate_body`; ``aspect_ratio`` is only allowed when combining several images.

    Raises:
        ValidationError: naming the field, the value and the rule.
    """
    check_edit_inputs(image, images)
    body = _common(
        prompt,
        model=model,
        n=n,
        quality=quality,
        response_format=response_format,
        resolution=resolution,
        user=user,
        deferred=deferred,
    )
    if image is not None:
        body["image"] = _image_object("image", image)
    if images is not None:
        body["images"] = [_image_object(f"images[{i}]", item) for i, item in enumerate(images)]
    if aspect_ratio is not None:
        checked = _one_of("aspect_ratio", aspect_ratio, ASPECT_RATIOS)
        if images is None or len(images) < 2:
            raise ValidationError(
                "aspect_ratio",
                aspect_ratio,
                "used only when combining several images (images= with 2 or more); an edit of "
                "one image keeps its aspect ratio",
            )
        body["aspect_ratio"] = checked
    return _merge_extra(body, extra_body)
