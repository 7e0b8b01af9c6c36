"""``Client``: the blocking twin of ``AsyncClient``, for scripts, notebooks and sync web apps.

There is one implementation of every behaviour, the async core. A ``Client`` owns an
``AsyncClient`` living on a private event-loop thread (`._portal.LoopThread`) and runs
each call there as one task; the calling thread blocks until it is done. Every method is bridged
generically (`_bridge`): the sync method has the async method's exact parameters for type
checkers and IDEs, so adding one is one line.

What the sync client returns wraps the async models in thin proxies (``SyncImagesResponse``,
``SyncGeneratedImage``, ...): the same attribute names, read from the wrapped model, and
blocking ``save``/``read``/``wait``/``status``, plus ``stream()`` as a plain iterator. Data
classes with no behaviour (``SavedImage``, ``Outcome``, ``Usage``, ``Progress``) are returned as
they are.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from .._api._client import AsyncClient
from .._api._images import Images
from .._api._models import DeferredRequest, DeferredStatus, GeneratedImage, ImagesResponse
from .._api._models import FileOutput as _FileOutput
from .._api._models import Usage as _Usage
from .._bulk._batch import BatchRun
from .._bulk._batch_remote import RemoteBatchRun
from .._bulk._progress import Progress
from .._config import find_api_key, missing_key_error
from .._errors import ClientClosedError, ConfigurationError
from .._readonly import ReadOnly
from .._ui import _display
from ._portal import LoopThread

if TYPE_CHECKING:
    from .._bulk._batch import Outcome
    from .._config import Timeout
    from .._wire._retry import RetryPolicy

__all__ = [
    "Client",
    "SyncBatchRun",
    "SyncDeferredRequest",
    "SyncDeferredStatus",
    "SyncGeneratedImage",
    "SyncImages",
    "SyncImagesResponse",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_R = TypeVar("_R")
_V = TypeVar("_V")
_M = TypeVar("_M")


class _Bound(Protocol):
    """What the bridges need: the sync client and the core object the call goes to."""

    @property
    def _client(self) -> Client: ...
    @property
    def _target(self) -> Any: ...


class _Proxy(Generic[_M]):
    """Something of the async core (``_target``), used through a sync ``Client``."""

    __slots__ = ("__weakref__", "_client", "_target")

    def __init__(self, client: Client, target: _M) -> None:
        self._client = client
        self._target = target

    def __repr__(self) -> str:
        return repr(self._target)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Proxy):
            return type(other) is type(self) and bool(self._target == other._target)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._target)


class _Field(Generic[_V]):
    """A read-only attribute read from the proxied object under the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Field[_V]: ...
    @overload
    def __get__(self, obj: _Proxy[Any], owner: type | None = None) -> _V: ...
    def __get__(self, obj: _Proxy[Any] | None, owner: type | None = None) -> _V | _Field[_V]:
        if obj is None:
            return self
        value: _V = getattr(obj._target, self._name)
        return value


def _bridge(
    method: Callable[Concatenate[Any, _P], Awaitable[_T]], wrap: Callable[[Client, _T], _R]
) -> Callable[Concatenate[_Bound, _P], _R]:
    """A blocking method with ``method``'s parameters: runs it on the client's loop thread
    against the proxied object, then passes the result through ``wrap``."""

    def blocking(self: _Bound, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        client = self._client
        return wrap(client, client._loop.call(method, self._target, *args, **kwargs))

    functools.update_wrapper(blocking, method)
    return blocking


def _bridge_plain(
    method: Callable[Concatenate[Any, _P], _T], wrap: Callable[[Client, _T], _R]
) -> Callable[Concatenate[_Bound, _P], _R]:
    """As `_bridge`, for a method of the core that is not a coroutine function."""

    def blocking(self: _Bound, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        client, target = self._client, self._target

        async def run() -> _T:
            return method(target, *args, **kwargs)

        return wrap(client, client._loop.call(run))

    functools.update_wrapper(blocking, method)
    return blocking


def _bridge_iter(
    method: Callable[Concatenate[Any, _P], AsyncIterator[_T]],
) -> Callable[Concatenate[_Bound, _P], Iterator[_T]]:
    """A method returning a plain iterator over what ``method``'s async iterator yields."""

    def iterating(self: _Bound, /, *args: _P.args, **kwargs: _P.kwargs) -> Iterator[_T]:
        # Called here, not on the loop: it only builds the async generator, and errors it
        # raises at once (a blocked image) are raised at once here too.
        return self._client._loop.iterate(method(self._target, *args, **kwargs))

    functools.update_wrapper(iterating, method)
    return iterating


def _keep(_client: Client, value: _T) -> _T:
    return value


def _response(client: Client, value: ImagesResponse) -> SyncImagesResponse:
    return SyncImagesResponse(client, value)


def _deferred(client: Client, value: DeferredRequest) -> SyncDeferredRequest:
    return SyncDeferredRequest(client, value)


def _status(client: Client, value: DeferredStatus) -> SyncDeferredStatus:
    return SyncDeferredStatus(client, value)


async def _call_plain(func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    return func(*args, **kwargs)


# -- the models ----------------------------------------------------------------------------------


class SyncGeneratedImage(_Proxy[GeneratedImage]):
    """A `xai_images.GeneratedImage` from a sync ``Client``: blocking ``save``/``read``,
    ``stream()`` as a plain iterator; the attributes are the image's."""

    __slots__ = ()

    url = _Field[str | None]()
    mime_type = _Field[str | None]()
    revised_prompt = _Field[str | None]()
    respect_moderation = _Field[bool | None]()
    index = _Field[int]()
    request_id = _Field[str | None]()
    content = _Field[bytes | None]()
    b64_json = _Field[str | None]()
    blocked = _Field[bool]()
    source = _Field[str | None]()
    stem = _Field[str]()
    file_output = _Field[_FileOutput | None]()
    storage_error = _Field[str | None]()

    save = _bridge(GeneratedImage.save, _keep)
    read = _bridge(GeneratedImage.read, _keep)
    stream = _bridge_iter(GeneratedImage.stream)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return _display.image_bundle(self._target, self._client._fetch)


class SyncImagesResponse(_Proxy[ImagesResponse]):
    """An `xai_images.ImagesResponse` from a sync ``Client``: blocking ``save``; its
    images are `SyncGeneratedImage`; the other attributes are the response's."""

    __slots__ = ("_data",)

    def __init__(self, client: Client, target: ImagesResponse) -> None:
        super().__init__(client, target)
        self._data = tuple(SyncGeneratedImage(client, image) for image in target.data)

    usage = _Field[_Usage | None]()
    request_id = _Field[str | None]()
    model = _Field[str | None]()
    created = _Field[int | None]()
    requested = _Field[int | None]()
    blocked_count = _Field[int]()

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

    save = _bridge(ImagesResponse.save, _keep)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return _display.response_bundle(self._target, self._client._fetch)


class SyncDeferredStatus(_Proxy[DeferredStatus]):
    """A `xai_images.DeferredStatus` whose ``response`` is a `SyncImagesResponse`."""

    __slots__ = ()

    status = _Field[str]()
    error = _Field[str | None]()
    raw_status = _Field[str | None]()

    @property
    def response(self) -> SyncImagesResponse | None:
        """The images once ``status == "done"``, else ``None``."""
        response = self._target.response
        return None if response is None else SyncImagesResponse(self._client, response)


class SyncDeferredRequest(_Proxy[DeferredRequest]):
    """A `xai_images.DeferredRequest` of a sync ``Client``: blocking status and wait."""

    __slots__ = ()

    request_id = _Field[str]()

    status = _bridge(DeferredRequest.status, _status)
    wait = _bridge(DeferredRequest.wait, _response)


class SyncImages(_Proxy[Images]):
    """``client.images`` of a sync ``Client``: the methods of ``AsyncClient.images``,
    blocking, with the same parameters (field meanings: the ``Images`` docstring)."""

    __slots__ = ()

    generate = _bridge(Images.generate, _response)
    edit = _bridge(Images.edit, _response)
    generate_deferred = _bridge(Images.generate_deferred, _deferred)
    edit_deferred = _bridge(Images.edit_deferred, _deferred)
    send = _bridge(Images.send, _response)
    send_deferred = _bridge(Images.send_deferred, _deferred)
    get_deferred = _bridge(Images.get_deferred, _status)
    wait_deferred = _bridge(Images.wait_deferred, _response)


class SyncBatchRun(_Proxy[BatchRun | RemoteBatchRun]):
    """A bulk job of a sync ``Client``: iterate it (a plain ``for``) for outcomes as items finish.

    Prefer ``with client.batch(...) as run: for outcome in run: ...``; ``run.collect()`` runs to
    the end. In a Jupyter kernel the counters are shown under the cell and updated in place.
    Ctrl-C while iterating cancels the items in flight and closes the manifest, as cancelling
    the async iteration does.
    """

    __slots__ = ("_live",)

    def __init__(self, client: Client, target: BatchRun | RemoteBatchRun) -> None:
        super().__init__(client, target)
        self._live = _display.LiveProgress()

    progress = _Field[Progress]()
    output_dir = _Field[Path]()
    manifest_path = _Field[Path]()
    stopping = _Field[bool]()

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
        return _display.progress_html(self._target.progress)


# -- the client ----------------------------------------------------------------------------------


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
            self._async = self._loop.call(_call_plain, AsyncClient, *args, **kwargs)
        except BaseException:
            self._loop.close()
            raise
        self._target = self._async
        self.images = SyncImages(self, self._async.images)
        """Image generation, editing and deferred requests, blocking."""
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

    batch = _bridge_plain(AsyncClient.batch, SyncBatchRun)

    def _fetch(self, images: list[GeneratedImage], timeout: float) -> list[bytes | BaseException]:
        """Display support: read ``images`` through this client's loop and connection pool
        (once it is closed, as the images of an async client are read)."""
        if self.closed:
            return _display.fetch_detached(images, timeout)
        return self._loop.call(_display.fetch_images, images, timeout)
