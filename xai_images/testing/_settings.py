"""The fake server's switches (``FakeSettings``), its clock, and the API's fixed numbers.

Batch API settings (all read when a batch request is added, processed or read):

- ``batch_processing_seconds``: mean seconds a batch request takes once added (uniform between
  0 and twice this, so requests finish in a random order); 0 finishes each at once, still in
  shuffled order.
- ``batch_validation_seconds``: seconds before a file batch's JSONL is validated and its
  requests appear (until then ``num_requests`` is 0).
- ``batch_failure_rate`` / ``batch_moderation_rate``: probability that a batch request fails
  (not billed) or comes back moderated (billed, like the live API).
- ``batch_error_shape``: how a failed result is written (see ``docs/testing.md``).
- ``batch_url_ttl``: seconds after a request finishes when its image URLs expire (1 h).
- ``batch_ttl``: seconds after creation when a batch expires (``/results`` then 404).
- ``batch_create_limit`` / ``batch_add_limit`` (+ ``batch_add_window``): rolling limits on the
  clock above which creations and add calls get 429 (``None``: no limit).
- ``batch_add_max_bytes``: size limit of one add call's body (413 above it).
- ``clock``: a zero-argument callable giving the time in epoch seconds; a ``FakeClock`` lets a
  test move time forward without sleeping (URL expiry, processing, limits, file expiry).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from ._imagegen import FORMATS
from ._prices import DEFAULT_MODELS, FakeModel

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_MODEL",
    "MAX_INPUT_IMAGES",
    "MAX_INPUT_IMAGE_BYTES",
    "MAX_PROMPT_CHARS",
    "TICKS_PER_INPUT_IMAGE",
    "FakeClock",
    "FakeSettings",
    "check_loopback",
]

DEFAULT_API_KEY = "xai-fake-key"

TICKS_PER_INPUT_IMAGE = 20_000_000
MAX_PROMPT_CHARS = 10_000
MAX_INPUT_IMAGES = 5
MAX_INPUT_IMAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MODEL = "grok-imagine-image"

_LOOPBACK_NAMES = frozenset({"localhost", "::1"})
_BATCH_ERROR_SHAPES = ("string", "status", "vercel", "top_level", "mixed")


def check_loopback(host: str) -> str:
    """Return the address to bind for ``host``, or raise ``ValueError`` if it is not loopback."""
    if host == "localhost":
        return "127.0.0.1"
    if host in _LOOPBACK_NAMES:
        return host
    parts = host.split(".")
    if len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts):
        return host
    raise ValueError(f"the fake server binds loopback addresses only, not {host!r}")


class FakeClock:
    """A clock that moves only when told, for ``FakeSettings.clock``.

    ::

        clock = FakeClock()
        async with FakeXAIServer(clock=clock) as server:
            ...
            clock.advance(3601)  # every batch image URL finished an hour ago has expired

    Args:
        start: the initial time in epoch seconds (default: the real time now).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        """The current fake time, in epoch seconds."""
        return self._now

    def __repr__(self) -> str:
        return f"<FakeClock {self._now:.3f}>"

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("a FakeClock only moves forward")
        self._now += seconds


@attrs.define
class FakeSettings:
    """Every switch of the fake server; mutable, read on each request.

    Attributes:
        generation_latency: seconds each generate/edit waits before answering.
        download_latency: seconds each image download waits before the first byte.
        image_bytes: byte size of the images served (padding inside the container).
        image_format: ``"png"``, ``"jpeg"`` or ``"webp"``.
        rps_limit: accepted API requests allowed in any sliding 1 s window (no burst); one more
            gets 429 with ``Retry-After``. ``None`` for no limit.
        moderation: ``None``; ``"empty"`` answers 200 with ``data: []``; ``"blocked"`` answers
            images with neither ``url`` nor ``b64_json``.
        b64_prefix: ``b64_json`` values start with ``data:image/...;base64,``.
        url_ttl: seconds after generation when an image URL expires (``None``: never).
        upload_fail_rate: probability that the PUT of an image to its ``output.upload_urls``
            URL is not made (the image then answers a ``storage_error``; 1.0: every one).
        url_single_use: an image URL expires after one complete download.
        expired_status: status of an expired URL (403 or 404).
        support_range: downloads honour ``Range: bytes=N-`` with 206.
        deferred_pending_polls: how many polls of a deferred request answer 202 pending.
        deferred_fail: deferred requests end as ``status: failed``.
        error_shape: ``"xai"`` (``{"code", "error"}``) or ``"openai"`` (``{"error": {...}}``).
        fault_seed: seed of the random faults, so runs repeat.
        fault_label: text appended to the message of every random fault (the ``*_rate``
            settings below), e.g. ``" (simulated)"``, so that a demo's faults say what they are.
        generation_fault_rate: probability that a generate/edit answers 429 or 500 (half each,
            not billed).
        download_fault_rate: probability that a download answers 500 or is truncated.
        download_truncate_rate: probability that a download is cut short (after any
            ``download_fault_rate`` fault was drawn).
        drop_after_billing_rate: probability that a generate/edit is billed and its answer is
            then lost (the connection closes), as ``Reply.drop()`` does.
        stall_seconds: default pause of ``Reply.stall()``.
        url_ext: force this extension in image URLs (e.g. a wrong one); ``None``: the format's.
        revised_prompt: include ``revised_prompt`` in images (else the key is absent).
        clock: time source in epoch seconds (URL expiry, the Batch and Files APIs).
        batch_processing_seconds: mean processing time of one batch request.
        batch_validation_seconds: delay before a file batch's lines are validated and queued.
        batch_failure_rate: probability that a batch request fails (not billed).
        batch_moderation_rate: probability that a batch request's images are moderated (billed).
        batch_error_shape: ``"status"`` (``error: {code, message}``), ``"string"``
            (``error: "..."``), ``"vercel"`` (status plus a top-level ``error_message``, and
            ``code: 0`` on successes), ``"top_level"`` (top-level ``error: {message}`` and
            ``error_message``) or ``"mixed"`` (a random one per result).
        batch_edit_result_key: response key of edit results (``"image_generation"`` or
            ``"image_edit"``).
        batch_b64: honour ``response_format: b64_json`` in batch requests (else URLs only).
        batch_cancelled_in_results: list cancelled requests in ``/results`` with code 1.
        batch_time_format: ``"rfc3339"`` or ``"date"`` (bare ``YYYY-MM-DD``) timestamps.
        batch_end_token: how the last page says so: ``"null"``, ``"empty"`` or ``"absent"``.
        batch_url_ttl: seconds after a batch request finishes when its image URLs expire.
        batch_ttl: seconds after creation when a batch expires.
        batch_create_limit: batch creations allowed in any rolling second (``None``: no limit).
        batch_add_limit: add-requests calls allowed per ``batch_add_window`` seconds.
        batch_add_window: the rolling window of ``batch_add_limit``, in seconds.
        batch_add_max_bytes: the largest add-requests body accepted (413 above).
        batch_file_max_requests: most lines in a batch's JSONL file.
        batch_unsupported_models: models refused for batch processing.
        files_max_bytes: the largest file ``POST /v1/files`` accepts (413 above).
        models: the image models listed at ``/v1/image-generation-models``, with the prices
            billed in ``usage``; a request naming another model is refused with 404, unbilled.
    """

    generation_latency: float = 0.0
    download_latency: float = 0.0
    image_bytes: int = 4096
    image_format: str = attrs.field(default="png", validator=attrs.validators.in_(FORMATS))
    rps_limit: float | None = None
    moderation: str | None = attrs.field(
        default=None, validator=attrs.validators.in_((None, "empty", "blocked"))
    )
    b64_prefix: bool = False
    url_ttl: float | None = None
    upload_fail_rate: float = 0.0
    url_single_use: bool = False
    expired_status: int = 404
    support_range: bool = True
    deferred_pending_polls: int = 1
    deferred_fail: bool = False
    error_shape: str = attrs.field(default="xai", validator=attrs.validators.in_(("xai", "openai")))
    fault_seed: int = 0
    fault_label: str = ""
    generation_fault_rate: float = 0.0
    download_fault_rate: float = 0.0
    download_truncate_rate: float = 0.0
    drop_after_billing_rate: float = 0.0
    stall_seconds: float = 1.0
    url_ext: str | None = None
    revised_prompt: bool = True
    clock: Callable[[], float] = time.time
    batch_processing_seconds: float = 0.0
    batch_validation_seconds: float = 0.0
    batch_failure_rate: float = 0.0
    batch_moderation_rate: float = 0.0
    batch_error_shape: str = attrs.field(
        default="status", validator=attrs.validators.in_(_BATCH_ERROR_SHAPES)
    )
    batch_edit_result_key: str = attrs.field(
        default="image_generation",
        validator=attrs.validators.in_(("image_generation", "image_edit")),
    )
    batch_b64: bool = True
    batch_cancelled_in_results: bool = False
    batch_time_format: str = attrs.field(
        default="rfc3339", validator=attrs.validators.in_(("rfc3339", "date"))
    )
    batch_end_token: str = attrs.field(
        default="null", validator=attrs.validators.in_(("null", "empty", "absent"))
    )
    batch_url_ttl: float = 3600.0
    batch_ttl: float = 86400.0
    batch_create_limit: int | None = 1
    batch_add_limit: int | None = 100
    batch_add_window: float = 30.0
    batch_add_max_bytes: int = 25 * 1024 * 1024
    batch_file_max_requests: int = 50_000
    batch_unsupported_models: tuple[str, ...] = ()
    files_max_bytes: int = 50 * 1024 * 1024
    models: tuple[FakeModel, ...] = attrs.field(default=DEFAULT_MODELS, converter=tuple)
