"""``Client``: the blocking twin of ``AsyncClient``, for scripts, notebooks and sync web apps.

There is one implementation of every behaviour, the async core. A ``Client`` owns an
``AsyncClient`` living on a private event-loop thread (`._portal.LoopThread`) and runs
each call there as one task; the calling thread blocks until it is done. Every method is bridged
generically (``_bridge.py``): a sync method has the async method's exact parameters for type
checkers and IDEs, and a resource method added to the core appears here without code of its own.
What calls return is wrapped in the sync proxies of ``_models.py``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from .._api._batches import Batches
from .._api._files import Files
from .._api._image_models import ImageModels
from .._api._images import Images
from .._bulk._client import AsyncClient
from .._config import find_api_key, missing_key_error
from .._errors import ClientClosedError, ConfigurationError
from .._readonly import ReadOnly
from ._bridge import SyncResource, bridge, bridge_iter, bridge_plain, call_plain, keep
from ._models import SyncBatchRun, SyncResultsPage, response
from ._models import SyncDeferredRequest as _Deferred
from ._models import SyncDeferredStatus as _Status
from ._portal import LoopThread

if TYPE_CHECKING:
    from .._config import Timeout
    from .._wire._retry import RetryPolicy

__all__ = ["Client", "SyncBatches", "SyncFiles", "SyncImageModels", "SyncImages"]

_P = ParamSpec("_P")


def _deferred(client: Any, value: Any) -> _Deferred:
    return _Deferred(client, value)


def _status(client: Any, value: Any) -> _Status:
    return _Status(client, value)


def _page(client: Any, value: Any) -> SyncResultsPage:
    return SyncResultsPage(client, value)


class SyncImageModels(SyncResource[ImageModels], core=ImageModels):
    """``client.images.models`` of a sync ``Client``: blocking ``list`` and ``get``."""

    __slots__ = ()

    list = bridge(ImageModels.list, keep)
    get = bridge(ImageModels.get, keep)


class SyncImages(SyncResource[Images], core=Images):
    """``client.images`` of a sync ``Client``: the methods of ``AsyncClient.images``,
    blocking, with the same parameters (field meanings: the ``Images`` docstring)."""

    __slots__ = ()

    @property
    def models(self) -> SyncImageModels:
        """The image models and their prices (blocking ``list`` / ``get``)."""
        return SyncImageModels(self._client, self._target.models)

    estimate = bridge(Images.estimate, keep)

    generate = bridge(Images.generate, response)
    edit = bridge(Images.edit, response)
    generate_deferred = bridge(Images.generate_deferred, _deferred)
    edit_deferred = bridge(Images.edit_deferred, _deferred)
    send = bridge(Images.send, response)
    send_deferred = bridge(Images.send_deferred, _deferred)
    get_deferred = bridge(Images.get_deferred, _status)
    wait_deferred = bridge(Images.wait_deferred, response)
    send_to_store = bridge(Images.send_to_store, keep)


class SyncBatches(SyncResource[Batches], core=Batches):
    """``client.batches`` of a sync ``Client``: xAI's Batch API, blocking (see ``Batches``);
    ``list`` and ``list_requests`` are plain iterators."""

    __slots__ = ()

    create = bridge(Batches.create, keep)
    find = bridge(Batches.find, keep)
    get = bridge(Batches.get, keep)
    list = bridge_iter(Batches.list)
    list_requests = bridge_iter(Batches.list_requests)
    request_ids = bridge(Batches.request_ids, keep)
    results = bridge(Batches.results, _page)
    cancel = bridge(Batches.cancel, keep)
    wait = bridge(Batches.wait, keep)
    add = bridge(Batches.add, keep)


class SyncFiles(SyncResource[Files], core=Files):
    """``client.files`` of a sync ``Client``: the Files API, blocking (see ``Files``); ``list``
    is a plain iterator."""

    __slots__ = ()

    upload = bridge(Files.upload, keep)
    list = bridge_iter(Files.list)
    get = bridge(Files.get, keep)
    delete = bridge(Files.delete, keep)
    download = bridge(Files.download, keep)
    read = bridge(Files.read, keep)
    create_public_url = bridge(Files.create_public_url, keep)
    revoke_public_url = bridge(Files.revoke_public_url, keep)


def _same_arguments(
    _init: Callable[Concatenate[Any, _P], None],
) -> Callable[[Callable[..., None]], Callable[Concatenate[Any, _P], None]]:
    """Give the decorated ``__init__`` the signature of ``_init`` for type checkers."""

    def decorate(init: Callable[..., None]) -> Callable[Concatenate[Any, _P], None]:
        return init

    return decorate


class Client:
    """Blocking client for the xAI image API: ``with Client() as client:`` then
    ``client.images.generate(...)``.

    Takes the arguments of `AsyncClient` (except ``session``: an ``aiohttp`` session
    belongs to one event loop, and this client runs its own) and behaves the same: the same
    checks, retries, errors and never-pay-twice rule, because the work is done by an
    ``AsyncClient`` on a private event-loop thread. One ``Client`` may be shared by many
    threads: the rate limit, the connection pool and the download slots are shared as well.
    It also works where an event loop is already running (a Jupyter cell, sync code called from
    async code). Ctrl-C during a call cancels that call and cleans up after it.

    Raises:
        ConfigurationError: as ``AsyncClient``, or ``session`` was given.
    """

    @_same_arguments(AsyncClient.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("session") is not None:
            raise ConfigurationError(
                "Client does not take session=: an aiohttp session belongs to one event loop, "
                "and Client runs its own; use AsyncClient to bring your own session"
            )
        given = args[0] if args else kwargs.get("api_key")
        if (given is None or isinstance(given, str)) and find_api_key(given) is None:
            # Checked here as well, so that the error names the class the caller built.
            raise missing_key_error("Client")
        self._loop = LoopThread("xai-images-client")
        try:
            # Built on the loop thread, so whatever it creates belongs to that loop.
            self._async = self._loop.call(call_plain, AsyncClient, *args, **kwargs)
        except BaseException:
            self._loop.close()
            raise
        self._target = self._async
        self.images = SyncImages(self, self._async.images)
        """Image generation, editing and deferred requests, blocking."""
        self.batches = SyncBatches(self, self._async.batches)
        """xAI's Batch API, blocking (``bulk(..., via="batch-api")`` runs whole jobs)."""
        self.files = SyncFiles(self, self._async.files)
        """The Files API, blocking."""
        # Closes the loop thread when the client is garbage collected or the interpreter exits
        # without close(); the finalizer holds no reference to the client itself.
        self._finalizer = weakref.finalize(self, self._loop.close, self._async.aclose)

    base_url: ReadOnly[str] = ReadOnly("_async.base_url")
    """The API root, e.g. ``https://api.x.ai/v1``."""
    timeout: ReadOnly[Timeout] = ReadOnly("_async.timeout")
    """The default per-attempt `Timeout`."""
    retry: ReadOnly[RetryPolicy] = ReadOnly("_async.retry")
    """The default `RetryPolicy`."""
    closed: ReadOnly[bool] = ReadOnly("_loop.closed")
    """``True`` after `close`."""

    def __repr__(self) -> str:
        return f"<Client base_url={self.base_url!r} {'closed' if self.closed else 'open'}>"

    def __enter__(self) -> Client:
        if self.closed:
            raise ClientClosedError("this Client is closed; create a new one")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel calls still running in other threads, close the connections and stop the
        loop thread. Idempotent."""
        self._finalizer()

    @property
    def _client(self) -> Client:
        return self

    bulk = bridge_plain(AsyncClient.bulk, SyncBatchRun)
    """Run a bulk job (arguments: ``AsyncClient.bulk``); iterate the `SyncBatchRun` it returns."""
    add_event_hook = bridge_plain(AsyncClient.add_event_hook, keep)
    """Call ``hook`` with every event of this client (see ``AsyncClient.add_event_hook``)."""
    remove_event_hook = bridge_plain(AsyncClient.remove_event_hook, keep)
    """Stop calling ``hook`` (one registration of it)."""
