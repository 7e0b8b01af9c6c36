"""The rule of each request field, in one place: limits, allowed values and the checks.

Each check takes the field's name (for the error) and its value, and raises
`ValidationError` naming both and the rule; ``_requests.py`` attaches them to the fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._errors import ValidationError

__all__ = [
    "ASPECT_RATIOS",
    "MAX_EDIT_IMAGES",
    "MAX_EXTRA_DEPTH",
    "MAX_N",
    "MAX_PROMPT_CHARS",
    "MAX_STORE_SECONDS",
    "MIN_STORE_SECONDS",
    "QUALITIES",
    "RESOLUTIONS",
    "RESPONSE_FORMATS",
    "check_extra",
    "check_id",
    "check_images",
    "check_n",
    "check_output",
    "check_prompt",
    "check_seconds",
    "check_storage_options",
    "check_str",
    "check_text",
    "check_upload_urls",
    "check_utf8",
    "one_of",
    "redact_output",
]

MAX_PROMPT_CHARS = 10_000
"""Longest prompt the API accepts, in characters."""
MAX_N = 10
"""Most images one request may ask for."""
MAX_EDIT_IMAGES = 5
"""Most input images one edit may combine (``images=[...]``)."""
MAX_EXTRA_DEPTH = 32
"""Deepest nesting of objects and lists ``extra_body`` may have."""
QUALITIES = ("low", "medium", "high", "auto")
RESPONSE_FORMATS = ("url", "b64_json")
# fmt: off
ASPECT_RATIOS = (
    "1:1", "3:4", "4:3", "9:16", "16:9", "2:3", "3:2", "9:19.5", "19.5:9", "9:20", "20:9",
    "1:2", "2:1", "21:9", "5:2", "auto",
)
# fmt: on
RESOLUTIONS = ("1k", "1.5k", "2k")
MAX_STORE_SECONDS = 2_592_000
"""Longest ``storage_options.expires_after`` (and public URL lifetime), in seconds (30 days)."""
MIN_STORE_SECONDS = 3600
"""Shortest lifetime the Files store takes for an uploaded file and for a public URL."""

_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_utf8(name: str, value: str) -> None:
    """Refuse a string that has no UTF-8 form (a lone surrogate such as ``"\\ud800"``).

    Such a string cannot be sent in a JSON body, hashed into an item id or written to the
    manifest, so every string field is checked here once, before anything is sent.

    Raises:
        ValidationError: naming ``name`` and the position of the first bad character.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            name,
            f"<{len(value)} characters>" if len(value) > 60 else value,
            f"text that can be encoded as UTF-8 (it has a lone surrogate {value[exc.start]!r} "
            f"at index {exc.start})",
        ) from None


def one_of(allowed: Sequence[str]) -> Callable[[str, Any], None]:
    """A check that the value is one of ``allowed``."""

    def check(name: str, value: Any) -> None:
        if not isinstance(value, str) or value not in allowed:
            raise ValidationError(name, value, "one of " + ", ".join(allowed))

    return check


def check_prompt(name: str, value: Any) -> None:
    """A non-empty string with a UTF-8 form, at most ``MAX_PROMPT_CHARS`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(name, value, "a non-empty string")
    check_utf8(name, value)
    if len(value) > MAX_PROMPT_CHARS:
        # The value is shortened in the message; the length is what matters.
        raise ValidationError(
            name, f"<{len(value)} characters>", f"at most {MAX_PROMPT_CHARS:,} characters"
        )


def check_text(name: str, value: Any) -> None:
    """A non-empty string with a UTF-8 form (``model``)."""
    # Models are not restricted to a known list: new ones appear, old names are aliased.
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(name, value, "a non-empty string")
    check_utf8(name, value)


def check_n(name: str, value: Any) -> None:
    """An int (not a bool) from 1 to ``MAX_N``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_N:
        raise ValidationError(name, value, f"an int between 1 and {MAX_N}")


def check_str(name: str, value: Any) -> None:
    """Any string with a UTF-8 form (``user``)."""
    if not isinstance(value, str):
        raise ValidationError(name, value, "a string")
    check_utf8(name, value)


def check_extra(name: str, value: Any) -> None:
    """A mapping with string keys; every key and string inside has a UTF-8 form, and it nests
    at most ``MAX_EXTRA_DEPTH`` levels. Values are otherwise sent as given."""
    if not isinstance(value, Mapping):
        raise ValidationError(name, value, "a mapping of field names to JSON values")
    # Walked with a stack, not recursion, so that any depth is measured without a RecursionError;
    # deeper nesting than any API field uses would exhaust the JSON encoder's recursion later.
    stack: list[tuple[str, Any, int]] = [(name, value, 1)]
    while stack:
        where, node, depth = stack.pop()
        if isinstance(node, str):
            check_utf8(where, node)
            continue
        if isinstance(node, Mapping):
            children = []
            for key in node:
                if not isinstance(key, str):
                    raise ValidationError(where, key, "a mapping with string keys")
                check_utf8(f"{where} key", key)
                children.append((f"{where}[{key!r}]", node[key]))
        elif isinstance(node, (list, tuple)):
            children = [(f"{where}[{i}]", item) for i, item in enumerate(node)]
        else:
            continue
        if children and depth >= MAX_EXTRA_DEPTH:
            raise ValidationError(name, "<nested>", f"nested at most {MAX_EXTRA_DEPTH} levels deep")
        stack.extend((w, v, depth + 1) for w, v in children)


def check_id(name: str, value: Any) -> None:
    """A bulk item id: it becomes part of file names, so only a safe alphabet."""
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise ValidationError(
            name,
            value,
            "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(it names the files)",
        )


def check_images(name: str, value: Any) -> None:
    """A sequence (not a string or bytes) of 1 to ``MAX_EDIT_IMAGES`` inputs."""
    if isinstance(value, (str, bytes, bytearray, memoryview)) or not isinstance(value, Sequence):
        raise ValidationError(name, value, "a list of images")
    if not 1 <= len(value) <= MAX_EDIT_IMAGES:
        raise ValidationError(
            name, f"<{len(value)} images>", f"between 1 and {MAX_EDIT_IMAGES} images"
        )


def check_upload_urls(body: Mapping[str, Any]) -> None:
    """``output.upload_urls`` in a body, when present, holds exactly one URL per image."""
    # The live API wants exactly one signed URL per image; a mismatch would be a paid 400.
    output = body.get("output")
    if not isinstance(output, Mapping) or "upload_urls" not in output:
        return
    urls = output["upload_urls"]
    n = body.get("n", 1)
    if not isinstance(urls, list) or len(urls) != n:
        # Signed URLs are secrets: the error shows how many there were, never the URLs.
        raise ValidationError(
            "output.upload_urls",
            redact_output(output).get("upload_urls"),
            f"a list of exactly n ({n}) signed URLs, one per image",
        )


def redact_output(value: Any) -> Any:
    """``output`` as it may be shown or recorded: signed upload URLs are secrets, so only
    their count is kept (``{"upload_urls": "<2 signed URLs>"}``)."""
    if not isinstance(value, Mapping) or "upload_urls" not in value:
        return value
    urls = value["upload_urls"]
    count = len(urls) if isinstance(urls, (list, tuple)) else "?"
    return {**value, "upload_urls": f"<{count} signed URLs>"}


def check_seconds(name: str, value: Any, low: int, high: int) -> None:
    """Whole seconds from ``low`` to ``high`` (a lifetime in the Files store)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(name, value, f"whole seconds from {low} to {high}")


def check_output(name: str, value: Any) -> None:
    """``output``: ``{"upload_urls": [...]}``, each an http(s) URL xAI PUTs one image to (the
    count is checked against ``n`` with the whole body: `check_upload_urls`). Other keys are
    sent as given."""
    check_extra(name, value)
    urls = value.get("upload_urls")
    if urls is None:
        raise ValidationError(name, value, 'an object with "upload_urls": a list of signed URLs')
    if isinstance(urls, (str, bytes)) or not isinstance(urls, Sequence) or not urls:
        raise ValidationError(f"{name}.upload_urls", urls, "a non-empty list of signed URLs")
    for index, url in enumerate(urls):
        if not isinstance(url, str) or not url[:8].lower().startswith(("http://", "https://")):
            # The URL is signed: not shown in the error.
            raise ValidationError(f"{name}.upload_urls[{index}]", "<url>", "an http(s) URL")


def check_storage_options(name: str, value: Any) -> None:
    """``storage_options``: ``{filename, expires_after?, public_url?}`` to keep the images in
    xAI's Files store: ``filename`` required, ``expires_after`` up to ``MAX_STORE_SECONDS``,
    ``public_url`` a bool or ``{expires_after}`` of ``MIN_STORE_SECONDS`` to
    ``MAX_STORE_SECONDS``. Other keys are sent as given."""
    check_extra(name, value)
    filename = value.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        raise ValidationError(f"{name}.filename", filename, "a non-empty string (required)")
    if "expires_after" in value:
        check_seconds(f"{name}.expires_after", value["expires_after"], 1, MAX_STORE_SECONDS)
    public = value.get("public_url")
    if public is None or isinstance(public, bool):
        return
    if not isinstance(public, Mapping):
        raise ValidationError(f"{name}.public_url", public, "a bool or {expires_after: seconds}")
    if "expires_after" in public:
        check_seconds(
            f"{name}.public_url.expires_after",
            public["expires_after"],
            MIN_STORE_SECONDS,
            MAX_STORE_SECONDS,
        )
