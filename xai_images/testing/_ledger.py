"""What the fake server records: every request, and counters of billing and downloads."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["Ledger", "RecordedRequest"]


def _redact_headers(headers: Mapping[str, str]) -> str:
    return repr(
        {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in headers.items()}
    )


def _short_body(body: Any) -> str:
    text = repr(body)
    return text if len(text) <= 200 else text[:197] + "..."


@attrs.frozen
class RecordedRequest:
    """One request the fake received.

    Attributes:
        method: ``"GET"``, ``"POST"``, ...
        path: URL path, e.g. ``"/v1/images/generations"`` or ``"/imgen/xai-tmp-imgen-....png"``.
        headers: request headers as received (names keep the client's spelling; look them up
            case-insensitively if unsure). Shown redacted in the repr.
        body: the parsed JSON body, or ``None`` (no body, or not JSON).
        status: the status answered; 0 when the connection was dropped without an answer.
        raw_path: the path as sent, percent-encoding kept (``/v1/batches/a%2Fb%3A1:cancel``
            where `path` reads ``/v1/batches/a/b:1:cancel``), with its query string.
    """

    method: str
    path: str
    headers: dict[str, str] = attrs.field(repr=_redact_headers)
    body: Any = attrs.field(repr=_short_body)
    status: int
    raw_path: str = attrs.field(default="", eq=False)

    def header(self, name: str) -> str | None:
        """Return a header's value, looked up case-insensitively, or ``None``."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


@attrs.define
class Ledger:
    """What happened on the fake server, for tests to assert on.

    Attributes:
        requests: every request (API and downloads) in the order they finished.
        images_billed: images charged, including answers that were dropped or hung.
        images_delivered: images (with ``url`` or ``b64_json``) in answers actually sent.
        images_downloaded: complete successful image downloads (a 206 that reaches the end counts).
        downloads_with_auth: downloads that carried an ``Authorization`` header (a key leak).
        rate_limited: 429 answers of any origin (limit, script, random fault).
        billed_prompts: images billed per prompt.
        cost_in_usd_ticks: total billed, as the API counts it.
        unknown_model_refusals: generate/edit requests refused (404, unbilled) because they name
            a model the fake does not list.
        requests_started: requests received so far (counted on arrival, unlike ``requests``).
        peak_api_concurrency: most API requests handled at the same time.
        peak_download_concurrency: most downloads served at the same time.
        files_uploaded: files accepted by ``POST /v1/files``.
        images_uploaded: images PUT to the caller's ``output.upload_urls`` (answered 2xx).
        batches_created: batches created by ``POST /v1/batches``.
        batch_adds: add-requests calls accepted (answered 200, or run and then dropped).
        batch_requests_added: batch requests accepted, by add calls and from files.
        batch_request_adds: per ``batch_request_id``, how often it was sent in an add call whose
            JSON body the server read (past auth and the rate limit), accepted or refused: a
            duplicate add shows as 2.
        batch_images_billed: images billed by batch requests (also in ``images_billed``).
        batch_requests_succeeded / batch_requests_failed / batch_requests_cancelled: batch
            requests that ended that way (xAI-cancelled file batches count none).
    """

    requests: list[RecordedRequest] = attrs.Factory(list)
    images_billed: int = 0
    images_delivered: int = 0
    images_downloaded: int = 0
    downloads_with_auth: int = 0
    rate_limited: int = 0
    billed_prompts: collections.Counter[str] = attrs.Factory(collections.Counter)
    cost_in_usd_ticks: int = 0
    unknown_model_refusals: int = 0
    requests_started: int = 0
    peak_api_concurrency: int = 0
    peak_download_concurrency: int = 0
    files_uploaded: int = 0
    images_uploaded: int = 0
    # The Batch API's counters.
    batches_created: int = attrs.field(default=0)
    batch_adds: int = attrs.field(default=0)
    batch_request_adds: collections.Counter[str] = attrs.Factory(collections.Counter)
    batch_requests_added: int = attrs.field(default=0)
    batch_images_billed: int = attrs.field(default=0)
    batch_requests_succeeded: int = attrs.field(default=0)
    batch_requests_failed: int = attrs.field(default=0)
    batch_requests_cancelled: int = attrs.field(default=0)

    def api_requests(self) -> list[RecordedRequest]:
        """The requests to the API host (paths under ``/v1``)."""
        return [r for r in self.requests if r.path.startswith("/v1/")]

    def downloads(self) -> list[RecordedRequest]:
        """The requests to the image host (paths under ``/imgen/``)."""
        return [r for r in self.requests if r.path.startswith("/imgen/")]

    def clear(self) -> None:
        """Empty the ledger in place (references to it stay valid)."""
        fresh = Ledger()
        for field in attrs.fields(Ledger):
            value = getattr(self, field.name)
            if isinstance(value, (list, collections.Counter)):
                value.clear()  # in place: references to the lists and counters stay valid too
            else:
                setattr(self, field.name, getattr(fresh, field.name))
