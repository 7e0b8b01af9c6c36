"""What a sync ``Client`` returns: thin proxies over the async models.

The same attribute names, read from the wrapped model, and blocking ``save``/``read``/
``wait``/``status``, plus ``stream()`` as a plain iterator. Data classes with no behaviour
(``SavedImage``, ``Outcome``, ``Usage``, ``Progress``, ``Batch``, ``FileObject``) are returned
as they are. In Jupyter, URL images of a sync client are read through its own loop thread and
connection pool, once, when first displayed (after ``close()`` they are shown by their URL).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._api._batch_models import BatchResult, ResultsPage
from .._api._models import (
    DeferredRequest,
    DeferredStatus,
    GeneratedImage,
    ImagesResponse,
    image_bundle,
    picture_of,
    response_bundle,
)
from .._api._models import FileOutput as _FileOutput
from .._api._models import Usage as _Usage
from .._bulk._progress import Progress
from ._bridge import Field, Owner, Proxy, bridge, bridge_iter, keep, register

if TYPE_CHECKING:
    from .._bulk._live import LiveProgress
    from .._bulk._outcome import Outcome
    from .._bulk._source_batchapi import RemoteBatchRun
    from .._bulk._source_realtime import BatchRun
    from .._results._preview import Picture

__all__ = [
    "FETCH_TIMEOUT",
    "SyncBatchResult",
    "SyncBatchRun",
    "SyncDeferredRequest",
    "SyncDeferredStatus",
    "SyncGeneratedImage",
    "SyncImagesResponse",
    "SyncResultsPage",
]

FETCH_TIMEOUT = 30.0
"""Seconds a display waits for its images before showing why they are missing."""

# What displays fetched (bytes, or why not), per image: two displays of one image fetch once.
_fetched: weakref.WeakKeyDictionary[GeneratedImage, bytes | str] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


async def _read_all(images: Sequence[GeneratedImage]) -> list[bytes | BaseException]:
    async def one(image: GeneratedImage) -> bytes:
        return await asyncio.wait_for(image.read(), FETCH_TIMEOUT)

    return await asyncio.gather(*(one(image) for image in images), return_exceptions=True)


def _pictures(client: Owner, images: Sequence[GeneratedImage]) -> list[Picture]:
    """What to show of each image: fetched through ``client``'s loop (each image once)."""
    from .._results._preview import Link, reason

    shown = [picture_of(image) for image in images]
    with _lock:
        missing = [
            image
            for image, picture in zip(images, shown, strict=True)
            if isinstance(picture, Link) and image not in _fetched
        ]
        if missing and not client._loop.closed:
            try:
                results = client._loop.call(_read_all, missing)
            except Exception as exc:  # e.g. closed meanwhile: shown, never raised
                results = [exc] * len(missing)
            for image, result in zip(missing, results, strict=True):
                _fetched[image] = (
                    result if isinstance(result, bytes) else reason(result, FETCH_TIMEOUT)
                )
        return [_fetched.get(image, picture) for image, picture in zip(images, shown, strict=True)]


class SyncGeneratedImage(Proxy[GeneratedImage]):
    """A `xai_images.GeneratedImage` from a sync ``Client``: blocking ``save``/``read``,
    ``stream()`` as a plain iterator; the attributes are the image's."""

    __slots__ = ()

    url = Field[str | None]()
    mime_type = Field[str | None]()
    revised_prompt = Field[str | None]()
    respect_moderation = Field[bool | None]()
    index = Field[int]()
    request_id = Field[str | None]()
    content = Field[bytes | None]()
    b64_json = Field[str | None]()
    blocked = Field[bool]()
    source = Field[str | None]()
    stem = Field[str]()
    file_output = Field[_FileOutput | None]()
    storage_error = Field[str | None]()

    save = bridge(GeneratedImage.save, keep)
    read = bridge(GeneratedImage.read, keep)
    stream = bridge_iter(GeneratedImage.stream)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        (picture,) = _pictures(self._client, [self._target])
        return image_bundle(self._target, picture)


class SyncImagesResponse(Proxy[ImagesResponse]):
    """An `xai_images.ImagesResponse` from a sync ``Client``: blocking ``save``; its
    images are `SyncGeneratedImage`; the other attributes are the response's."""

    __slots__ = ("_data",)

    def __init__(self, client: Owner, target: ImagesResponse) -> None:
        super().__init__(client, target)
        self._data = tuple(SyncGeneratedImage(client, image) for image in target.data)

    usage = Field[_Usage | None]()
    request_id = Field[str | None]()
    model = Field[str | None]()
    created = Field[int | None]()
    requested = Field[int | None]()
    blocked_count = Field[int]()

    @property
    def data(self) -> tuple[SyncGeneratedImage, ...]:
        """The images, in order (blocked ones included)."""
        return self._data

    @property
    def images(self) -> tuple[SyncGeneratedImage, ...]:
        """The images that were delivered."""
        return tuple(image for image in self._data if not image.blocked)

    @property
    def blocked(self) -> tuple[SyncGeneratedImage, ...]:
        """The images withheld by moderation."""
        return tuple(image for image in self._data if image.blocked)

    save = bridge(ImagesResponse.save, keep)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        target = self._target
        return response_bundle(target, _pictures(self._client, target.data))


class SyncDeferredStatus(Proxy[DeferredStatus]):
    """A `xai_images.DeferredStatus` whose ``response`` is a `SyncImagesResponse`."""

    __slots__ = ()

    status = Field[str]()
    error = Field[str | None]()
    raw_status = Field[str | None]()
    request_id = Field[str | None]()
    x_request_id = Field[str | None]()

    @property
    def response(self) -> SyncImagesResponse | None:
        """The images once ``status == "done"``, else ``None``."""
        response = self._target.response
        return None if response is None else SyncImagesResponse(self._client, response)


def _status(client: Owner, value: DeferredStatus) -> SyncDeferredStatus:
    return SyncDeferredStatus(client, value)


def response(client: Owner, value: ImagesResponse) -> SyncImagesResponse:
    """The sync proxy of ``value``."""
    return SyncImagesResponse(client, value)


class SyncDeferredRequest(Proxy[DeferredRequest]):
    """A `xai_images.DeferredRequest` of a sync ``Client``: blocking status and wait."""

    __slots__ = ()

    request_id = Field[str]()
    x_request_id = Field[str | None]()

    status = bridge(DeferredRequest.status, _status)
    wait = bridge(DeferredRequest.wait, response)


class SyncBatchResult(Proxy[BatchResult]):
    """A :class:`xai_images.bulk.BatchResult` whose ``response`` is a `SyncImagesResponse`."""

    __slots__ = ()

    batch_request_id = Field[str]()
    status = Field[str]()
    error_code = Field[int | str | None]()
    error_message = Field[str | None]()
    ok = Field[bool]()
    cancelled = Field[bool]()

    @property
    def response(self) -> SyncImagesResponse | None:
        """The images of a success (or of a blocked request), else ``None``."""
        value = self._target.response
        return None if value is None else SyncImagesResponse(self._client, value)


class SyncResultsPage(Proxy[ResultsPage]):
    """A :class:`xai_images.bulk.ResultsPage` whose results are `SyncBatchResult`."""

    __slots__ = ()

    next_page_token = Field[str | None]()
    page_token = Field[str | None]()
    request_id = Field[str | None]()

    @property
    def results(self) -> tuple[SyncBatchResult, ...]:
        """The results on this page, in the server's order."""
        return tuple(SyncBatchResult(self._client, result) for result in self._target.results)


class SyncBatchRun(Proxy["BatchRun | RemoteBatchRun"]):
    """A bulk job of a sync ``Client``: iterate it (a plain ``for``) for outcomes as items finish.

    Prefer ``with client.bulk(...) as run: for outcome in run: ...``; ``run.collect()`` runs to
    the end. In a Jupyter kernel the counters are shown under the cell and updated in place.
    Ctrl-C while iterating cancels the items in flight and closes the manifest, as cancelling
    the async iteration does.
    """

    __slots__ = ("_live",)

    def __init__(self, client: Owner, target: BatchRun | RemoteBatchRun) -> None:
        from .._bulk._live import LiveProgress  # notebook display: loaded when a job starts

        super().__init__(client, target)
        self._live: LiveProgress = LiveProgress()

    progress = Field[Progress]()
    output_dir = Field[Path]()
    manifest_path = Field[Path]()
    stopping = Field[bool]()

    def stop(self) -> None:
        """Stop starting new items (see `BatchRun.stop`); safe from any thread."""
        self._client._loop.call_soon(self._target.stop)

    def __iter__(self) -> SyncBatchRun:
        return self

    def __next__(self) -> Outcome:
        try:
            outcome = self._client._loop.call(self._target.__anext__)
        except StopAsyncIteration:
            self._show(final=True)
            raise StopIteration from None
        except BaseException:
            self._show(final=True)
            raise
        self._show(final=False)
        return outcome

    def _show(self, *, final: bool) -> None:
        self._live.show(self._target.progress, final=final)

    def close(self) -> None:
        """Stop the workers (cancelling items in flight), flush and close the manifest."""
        self._client._loop.call(self._target.aclose)
        self._show(final=True)

    def __enter__(self) -> SyncBatchRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def collect(self) -> list[Outcome]:
        """Run to the end and return every outcome, in finishing order."""
        with self:
            return list(self)

    def _repr_html_(self) -> str:
        from .._bulk._live import progress_html

        return progress_html(self._target.progress)


register(GeneratedImage, SyncGeneratedImage)
register(ImagesResponse, SyncImagesResponse)
register(DeferredRequest, SyncDeferredRequest)
register(DeferredStatus, SyncDeferredStatus)
register(BatchResult, SyncBatchResult)
register(ResultsPage, SyncResultsPage)
