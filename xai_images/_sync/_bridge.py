"""The generic bridge from the async core to the blocking ``Client``.

A sync object is a `Proxy` of one core object (``_target``) and of the sync client (``_client``,
which owns the loop thread). `bridge` makes a blocking method with the async method's exact
parameters for type checkers; what it returns goes through `wrap`, which turns core models into
their sync proxies (registered with `register`), async iterators into plain iterators, and
leaves plain data as it is. `SyncResource` subclasses bridge every public method of their
core class that they do not declare themselves, so a method added to an async resource appears
on the sync client at once (typed once someone adds its one-line declaration).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

if TYPE_CHECKING:
    from ._portal import LoopThread

__all__ = [
    "Bound",
    "Field",
    "Owner",
    "Proxy",
    "SyncResource",
    "bridge",
    "bridge_iter",
    "bridge_plain",
    "keep",
    "register",
    "wrap",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_R = TypeVar("_R")
_V = TypeVar("_V")
_M = TypeVar("_M")


class Owner(Protocol):
    """The sync client, as the bridges see it: its loop thread."""

    @property
    def _loop(self) -> LoopThread: ...


class Bound(Protocol):
    """What the bridges need: the sync client and the core object the call goes to."""

    @property
    def _client(self) -> Owner: ...
    @property
    def _target(self) -> Any: ...


class Proxy(Generic[_M]):
    """Something of the async core (``_target``), used through a sync ``Client``."""

    __slots__ = ("__weakref__", "_client", "_target")

    def __init__(self, client: Owner, target: _M) -> None:
        self._client = client
        self._target = target

    def __repr__(self) -> str:
        return repr(self._target)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Proxy):
            return type(other) is type(self) and bool(self._target == other._target)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._target)


class Field(Generic[_V]):
    """A read-only attribute read from the proxied object under the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Field[_V]: ...
    @overload
    def __get__(self, obj: Proxy[Any], owner: type | None = None) -> _V: ...
    def __get__(self, obj: Proxy[Any] | None, owner: type | None = None) -> _V | Field[_V]:
        if obj is None:
            return self
        value: _V = getattr(obj._target, self._name)
        return value


_WRAPPERS: dict[type, Callable[[Owner, Any], Any]] = {}


def register(model: type[_M], proxy: Callable[[Owner, _M], object]) -> None:
    """Let `wrap` turn instances of the core ``model`` into ``proxy(client, instance)``."""
    _WRAPPERS[model] = proxy


def wrap(client: Owner, value: Any) -> Any:
    """What a sync method returns for ``value`` of the core: its registered proxy, a plain
    iterator for an async iterator (its items wrapped), ``value`` itself otherwise."""
    proxy = _WRAPPERS.get(type(value))
    if proxy is not None:
        return proxy(client, value)
    if isinstance(value, AsyncIterator):
        return (wrap(client, item) for item in client._loop.iterate(value))
    return value


def keep(_client: Owner, value: _T) -> _T:
    """A wrapper for results that are plain data."""
    return value


def bridge(
    method: Callable[Concatenate[Any, _P], Awaitable[_T]], convert: Callable[[Any, _T], _R]
) -> Callable[Concatenate[Bound, _P], _R]:
    """A blocking method with ``method``'s parameters: runs it on the client's loop thread
    against the proxied object, then passes the result through ``convert``."""

    def blocking(self: Bound, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        client = self._client
        return convert(client, client._loop.call(method, self._target, *args, **kwargs))

    functools.update_wrapper(blocking, method)
    return blocking


async def call_plain(func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Call ``func`` (not a coroutine function) as a coroutine, on the loop that awaits it."""
    return func(*args, **kwargs)


def bridge_plain(
    method: Callable[Concatenate[Any, _P], _T], convert: Callable[[Any, _T], _R]
) -> Callable[Concatenate[Bound, _P], _R]:
    """As `bridge`, for a method of the core that is not a coroutine function."""

    def blocking(self: Bound, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        client, target = self._client, self._target

        async def run() -> _T:
            return method(target, *args, **kwargs)

        return convert(client, client._loop.call(run))

    functools.update_wrapper(blocking, method)
    return blocking


def bridge_iter(
    method: Callable[Concatenate[Any, _P], AsyncIterator[_T]],
) -> Callable[Concatenate[Bound, _P], Iterator[_T]]:
    """A method returning a plain iterator over what ``method``'s async iterator yields."""

    def iterating(self: Bound, /, *args: _P.args, **kwargs: _P.kwargs) -> Iterator[_T]:
        # Called here, not on the loop: it only builds the async generator, and errors it
        # raises at once (a blocked image) are raised at once here too.
        client = self._client
        return (
            wrap(client, item)
            for item in client._loop.iterate(method(self._target, *args, **kwargs))
        )

    functools.update_wrapper(iterating, method)
    return iterating


def _forwarded(name: str, prop: property) -> property:
    """A property read (and set, when the core's is settable) on the proxied object."""

    def get(self: Proxy[Any]) -> Any:
        return wrap(self._client, getattr(self._target, name))

    def put(self: Proxy[Any], value: Any) -> None:
        setattr(self._target, name, value)

    return property(get, put if prop.fset is not None else None, doc=prop.__doc__)


class SyncResource(Proxy[_M]):
    """A resource of a sync ``Client`` (``client.images``, ``client.batches``, ...).

    Every public member of the core class ``core`` (given as a class keyword) that the
    subclass does not declare is bridged when the subclass is created: coroutine methods block,
    async generators become plain iterators, other methods run on the loop thread, properties
    are forwarded. Results go through `wrap`.
    """

    __slots__ = ()
    _core: ClassVar[type]

    def __init_subclass__(cls, core: type | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if core is None:
            return
        cls._core = core
        for name in dir(core):
            if name.startswith("_") or name in cls.__dict__:
                continue
            member = inspect.getattr_static(core, name)
            if isinstance(member, property):
                setattr(cls, name, _forwarded(name, member))
            elif inspect.isasyncgenfunction(member):
                setattr(cls, name, bridge_iter(member))
            elif inspect.iscoroutinefunction(member):
                setattr(cls, name, bridge(member, wrap))
            elif inspect.isfunction(member):
                setattr(cls, name, bridge_plain(member, wrap))

    if TYPE_CHECKING:
        # Methods bridged at class creation without a typed declaration (added to the core
        # after the sync class was last edited) are typed ``Any`` until declared.
        def __getattr__(self, name: str) -> Any: ...
