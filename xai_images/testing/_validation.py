"""Validation of generate and edit bodies, as the live API answers them (pure functions)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ._settings import MAX_INPUT_IMAGE_BYTES, MAX_INPUT_IMAGES, MAX_PROMPT_CHARS

__all__ = ["Problem", "validate_body"]

# (status, message): 422 for a body that does not deserialize, 400 for a bad value.
Problem = tuple[int, str]

_QUALITIES = frozenset({"low", "medium", "high", "auto"})
_RESPONSE_FORMATS = frozenset({"url", "b64_json"})
_RESOLUTIONS = frozenset({"1k", "1.5k", "2k"})
_ASPECT_RATIOS = frozenset(
    {"1:1", "3:4", "4:3", "9:16", "16:9", "2:3", "3:2", "9:19.5", "19.5:9", "9:20", "20:9"}
    | {"1:2", "2:1", "21:9", "5:2", "auto"}
)
_INPUT_KEYS = frozenset({"url", "file_id", "detail"})
_BATCH_INPUT_KEYS = _INPUT_KEYS | {"type"}
_INPUT_MIME_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/webp"})

# JSON type each request field must have; bool is checked apart because it is an int in Python.
_STR, _INT, _BOOL, _OBJ, _LIST = "string", "integer", "boolean", "object", "array"
_COMMON_FIELDS = {
    "prompt": _STR,
    "model": _STR,
    "n": _INT,
    "quality": _STR,
    "response_format": _STR,
    "aspect_ratio": _STR,
    "resolution": _STR,
    "user": _STR,
    "deferred": _BOOL,
    "storage_options": _OBJ,
    "output": _OBJ,
}
_EDIT_FIELDS = {**_COMMON_FIELDS, "image": _OBJ, "images": _LIST}


def validate_body(body: dict[str, Any], *, edit: bool, batch: bool = False) -> Problem | None:
    """Why a generate (or edit) body is refused, as ``(status, message)``, or ``None``.

    Args:
        batch: the body of a batch request, whose input images may also carry
            ``type: "image_url"`` (the form the Batch API documents).
    """
    fields = _EDIT_FIELDS if edit else _COMMON_FIELDS
    for name, value in body.items():
        wanted = fields.get(name)
        if wanted is None:
            return 422, f"Failed to deserialize the JSON body: unknown field `{name}`."
        if value is None and name != "prompt":
            continue
        if not _has_type(value, wanted):
            return (
                422,
                f"Failed to deserialize the JSON body: field `{name}`: invalid type, "
                f"expected {wanted}.",
            )
    if "prompt" not in body:
        return 422, "Failed to deserialize the JSON body: missing field `prompt`."
    prompt = body["prompt"]
    if not prompt:
        return 400, "prompt: must not be empty."
    if len(prompt) > MAX_PROMPT_CHARS:
        return 400, f"prompt: at most {MAX_PROMPT_CHARS} characters."
    n = body.get("n")
    if n is not None and not 1 <= n <= 10:
        return 400, "n: must be between 1 and 10."
    for name, allowed in (
        ("quality", _QUALITIES),
        ("response_format", _RESPONSE_FORMATS),
        ("aspect_ratio", _ASPECT_RATIOS),
        ("resolution", _RESOLUTIONS),
    ):
        value = body.get(name)
        if value is not None and value not in allowed:
            return 400, f"{name}: {value!r} is not one of {', '.join(sorted(allowed))}."
    if body.get("deferred") and body.get("response_format") == "b64_json":
        return 400, "deferred requests support response_format url only."
    output = body.get("output")
    if output is not None and "upload_urls" in output:
        urls = output["upload_urls"]
        if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
            return 422, "output.upload_urls: invalid type, expected a list of URLs."
        if len(urls) != (n or 1):
            return 400, "output.upload_urls: give exactly one URL per image (n)."
        if body.get("response_format") == "b64_json":
            return 400, "output.upload_urls supports response_format url only."
    if edit:
        return _validate_inputs(body, batch)
    return None


def _validate_inputs(body: dict[str, Any], batch: bool) -> Problem | None:
    image = body.get("image")
    images = body.get("images")
    if image is not None and images is not None:
        return 400, "Give either image or images, not both."
    if image is None and images is None:
        return 400, "An edit needs an input image: image or images."
    items = [image] if image is not None else images
    assert isinstance(items, list)
    if not items:
        return 400, "images: must not be empty."
    if len(items) > MAX_INPUT_IMAGES:
        return 400, f"images: at most {MAX_INPUT_IMAGES} input images."
    for index, item in enumerate(items):
        where = "image" if image is not None else f"images[{index}]"
        if not isinstance(item, dict):
            return 422, f"{where}: invalid type, expected object."
        unknown = set(item) - (_BATCH_INPUT_KEYS if batch else _INPUT_KEYS)
        if unknown:
            return 422, f"{where}: unknown field `{sorted(unknown)[0]}`."
        present = [k for k in ("url", "file_id") if item.get(k) is not None]
        for key in present:
            if not isinstance(item[key], str):
                return 422, f"{where}.{key}: invalid type, expected string."
        if len(present) != 1:
            return 400, f"{where}: give exactly one of url or file_id."
        if present[0] == "url":
            problem = _check_image_url(item["url"])
            if problem:
                return 400, f"{where}.url: {problem}"
    return None


def _has_type(value: Any, wanted: str) -> bool:
    if wanted == _STR:
        return isinstance(value, str)
    if wanted == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if wanted == _BOOL:
        return isinstance(value, bool)
    if wanted == _OBJ:
        return isinstance(value, dict)
    return isinstance(value, list)


def _check_image_url(url: str) -> str | None:
    """Why an input image URL is refused, or ``None``. Remote http(s) URLs are not fetched."""
    if url.startswith(("http://", "https://")):
        return None
    if not url.startswith("data:"):
        return "must be an http(s) URL or a data URI."
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        return "data URI must be base64-encoded: data:image/png;base64,..."
    mime = header[len("data:") : -len(";base64")].lower()
    if mime not in _INPUT_MIME_TYPES:
        return f"unsupported image type {mime!r}: use JPEG, PNG or WebP."
    if len(payload) // 4 * 3 > MAX_INPUT_IMAGE_BYTES + 3:
        return f"image too large: at most {MAX_INPUT_IMAGE_BYTES} bytes."
    try:
        decoded = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return "data URI payload is not valid base64."
    if len(decoded) > MAX_INPUT_IMAGE_BYTES:
        return f"image too large: at most {MAX_INPUT_IMAGE_BYTES} bytes."
    return None
