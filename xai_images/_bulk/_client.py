"""``AsyncClient``: the public async client, `CoreClient` plus bulk jobs (``client.bulk``).

The client itself (session, transport, retries, hooks, ``images``, ``batches``, ``files``) is
``CoreClient`` in ``_api/_client.py``; this thin subclass sits at the top of the bulk layer
so that the layers below never import the bulk engine, and the engine needs only the core.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypedDict

from .._api._client import CoreClient

if TYPE_CHECKING:
    import datetime

    from typing_extensions import Unpack

    from .._results._files import OnExists
    from .._results._output import Output
    from ._jobs import Source
    from ._progress import ProgressEvent
    from ._source_batchapi import BatchAPI, RemoteBatchRun
    from ._source_realtime import BatchRun

__all__ = ["AsyncClient", "BulkOptions"]


class BulkOptions(TypedDict, total=False):
    """The keyword arguments of ``AsyncClient.bulk`` besides ``output_dir``, as a typed dict
    (``**options: Unpack[BulkOptions]``); each is described, with its default, there."""

    manifest: str | os.PathLike[str] | None
    concurrency: int
    retry_failed: bool
    resend_unknown: bool
    on_event: Callable[[ProgressEvent], None] | None
    on_exists: OnExists
    verify_sha256: bool
    via: Literal["realtime", "batch-api"] | BatchAPI
    max_cost: object
    budget_name: str | None
    upload_urls: bool
    upload_expires: datetime.timedelta | float | None


class AsyncClient(CoreClient):
    """Async client for the xAI image API. Use it as ``async with AsyncClient() as client:``.

    Args:
        api_key: the key; else ``XAI_API_KEY``. Never shown in reprs, errors or logs.
        base_url: the API root; else ``XAI_BASE_URL``; else ``https://api.x.ai/v1``.
        timeout: per-attempt limits: a `Timeout`, or a number of seconds for
            ``Timeout.request``. Default ``Timeout(request=600, connect=10)``. Calls may override.
        max_retries: retries after the first attempt (default 2, so 3 attempts). Calls may
            override.
        retry: the full `RetryPolicy` (``max_retries`` then sets its attempts).
        session: an ``aiohttp.ClientSession`` to use instead of creating one. The client never
            closes a session it did not create. It must not carry an ``Authorization`` default
            header (it would be sent to the image host too).
        max_connections: connection pool size of the session the client creates (0: no limit).
        rate_limit: requests per second for API requests of this client (``None``: unlimited;
            the live API allows about 5). Shared by every call, spaced with no burst.
        shared_limit: a Redis URL (``redis://HOST:PORT/DB``): ``rate_limit`` then holds for
            every process and machine on this API key together (`SharedRateLimiter`;
            needs ``xai-images[shared]``). Redis unreachable at entry raises
            `SharedLimitError`.
        max_concurrent_requests: API requests in flight at once (``None``: unlimited).
        download: options for saving and streaming images (``DownloadOptions``).
        event_hooks: callbacks called with every event of this client (request sent, answer,
            retry, 429, download retry, cost); see `add_event_hook`.
        max_answer_bytes: the largest API answer read, counted after decompression (default
            128 MiB, above ten 2k images as base64); a larger one raises ``APIResponseError``
            without being held in memory.

    Raises:
        ConfigurationError: no API key anywhere, a key with characters an HTTP header cannot
            carry (control or non-latin-1 characters), a session with an ``Authorization`` default
            header, or any argument of the wrong type or out of range (the message names the
            argument and what it must be).
    """

    def bulk(
        self,
        requests: Source,
        *,
        output_dir: str | os.PathLike[str] | Output,
        **options: Unpack[BulkOptions],
    ) -> BatchRun | RemoteBatchRun:
        """Run many generate and edit requests as one resumable job; iterate for outcomes.

        Nothing starts before the first iteration. Prefer
        ``async with client.bulk(...) as run: async for outcome in run: ...`` (one
        ``Outcome`` per item, as items finish) so that leaving the loop early stops the workers
        and closes the manifest at once; ``await run.collect()`` runs to the end. Each image is
        saved as ``{id}-{index}.{ext}`` and each finished item appends a line to the manifest.
        One item failing never stops the others.

        Resuming: run the same job with the same manifest again. Items recorded ``ok`` whose
        files are intact are skipped. Items recorded ``failed`` or ``blocked`` run again only
        with ``retry_failed``; items recorded ``unknown`` only with ``resend_unknown``.

        Args:
            requests: ``GenerateRequest`` / ``EditRequest`` objects, dicts shaped like job-file
                lines, ``InvalidJob`` markers, in a list, any iterable or async iterable; or
                the path of a JSONL job file (one object per line with ``prompt`` and
                optionally any other field of ``GenerateRequest``; an ``image`` or
                ``images`` key makes it an edit, relative paths resolve against the file's
                directory). Every item is validated before it is sent; a bad one becomes a
                failed outcome naming its line.
            output_dir: where images and the manifest go; made absolute at once, so
                ``Outcome.files`` are absolute paths. An object store (``s3://bucket/prefix``,
                ``gs://...``, ``az://...``, ``memory://...``) takes the images instead: the
                manifest stays local (default ``./xai-images-<bucket>-<prefix>.manifest.jsonl``),
                a copy of it and a gallery page (``<manifest stem>.html``) are uploaded beside
                the images when the run ends, ``Outcome.files`` is empty (the record's
                ``files`` hold the keys), and an image paid for but not stored is kept in
                ``<manifest stem>.spill/`` (``FileRecord.spilled_to``).

        Keyword Args:
            manifest: the manifest file (default ``output_dir/manifest.jsonl``). Records of an
                earlier run there decide what is skipped (see Resuming).
            concurrency: API requests in flight at once. Downloads are capped separately by
                ``DownloadOptions.concurrency``; request starts by the client's ``rate_limit``.
            retry_failed: run again the items an earlier run recorded as ``failed`` or
                ``blocked``. A failed item whose images were generated (billed) but not saved
                is downloaded again from its recorded URLs, not generated again; a blocked item
                (moderation withheld every image) is generated again, which may pay again.
            resend_unknown: send again the items whose outcome is ``unknown`` (sent, answer
                lost), and generate again billed items whose image URLs expired; both may pay
                twice.
            on_event: called with a ``ProgressEvent`` for every step (from the event loop;
                keep it quick). Exceptions it raises are logged and ignored. The live counters
                are also on ``run.progress``.
            on_exists: what to do when an image file already exists: ``"overwrite"`` (default:
                the manifest, not a stray file, is the job's record), ``"skip"`` (keep an
                identical file; a different one fails the item), ``"fail"``.
            verify_sha256: when resuming, hash the files of done items instead of checking
                their sizes.
            via: ``"batch-api"`` (or a ``BatchAPI`` with detach/wait/cancel) runs the job as
                one xAI batch and returns a ``RemoteBatchRun``: see ``docs/batch-api.md``.
            max_cost: the job's budget in US dollars (``Decimal``, ``int``, ``float`` or a
                numeric string). Each request's worst-case price (from
                ``client.images.models``) is reserved before it is sent, and becomes its
                reported cost when the answer comes; a request that could take the spend past
                ``max_cost`` is not sent and the run ends with ``progress.budget_reached``
                (resumable; a rerun with a higher budget does what is left). The spend of
                earlier runs is read from the manifest. See ``docs/cost.md``.
            budget_name: with the client's ``shared_limit`` (Redis), processes whose budgets
                have the same name (default: the output directory's name; for a store, its URL)
                and API key share one spend.
            upload_urls: with an object-store ``output_dir`` (S3 or GCS), xAI PUTs each image
                straight into the store through a URL signed per item (keys
                ``{id}-{index}.jpg``); the objects are confirmed after each answer and recorded
                with key, size and etag (no sha256: the bytes never pass through this client).
                An image xAI could not upload fails its item with `UploadFailedError` (billed,
                not stored). With ``via="batch-api"`` each item is signed as it is added.
            upload_expires: how long the signed URLs stay valid (seconds or a timedelta;
                default 15 minutes, 24 hours through the Batch API).

        Raises:
            ValidationError: ``concurrency``, ``on_exists`` or ``max_cost`` is invalid (at
                once; ``max_cost`` smaller than one image when the run starts). Problems
                with single items never raise: they become failed outcomes. Iterating raises
                only if the manifest cannot be written or the request source itself raises.
        """
        from ._source_batchapi import engine  # deferred: loaded when a bulk job starts

        via = options.pop("via", "realtime")
        return engine(via)(self, requests, output_dir=output_dir, **options)
