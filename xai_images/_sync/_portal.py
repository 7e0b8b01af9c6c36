"""The sync client's private event loop: one thread, started by anyio's blocking portal.

Every blocking call of `xai_images.Client` becomes one plain asyncio task on that loop.
The calling thread waits for it; if the wait is interrupted (Ctrl-C raises ``KeyboardInterrupt``
in the main thread), the task is cancelled and the caller waits for its cleanup before the
exception goes on, so no ``.part`` file or half-finished work outlives the call.

Calls are asyncio tasks rather than tasks of the portal's task group on purpose: anyio cancel
scopes deliver cancellation again at every await until the scope exits, which would cancel the
core's own cleanup (``except BaseException: await part.abort()``) as well. The core is written
for asyncio's one-shot cancellation, and gets exactly that here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from anyio.from_thread import start_blocking_portal

from .._errors import ClientClosedError

__all__ = ["LoopThread"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _here() -> tuple[asyncio.AbstractEventLoop, int]:
    return asyncio.get_running_loop(), threading.get_ident()


class LoopThread:
    """An event loop running in its own daemon thread until `close`.

    Args:
        name: the thread's name (shown in ``threading.enumerate()`` and debuggers).
    """

    def __init__(self, name: str) -> None:
        self._cm = start_blocking_portal()
        self._portal = self._cm.__enter__()
        self._loop, self._ident = self._portal.call(_here)
        self._portal.call(lambda: setattr(threading.current_thread(), "name", name))
        # Touched on the loop thread only.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()
        self._closed = False
        # A forked child has no copy of the thread: its calls would wait forever.
        self._pid = os.getpid()

    @property
    def closed(self) -> bool:
        """``True`` once `close` was called."""
        return self._closed

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the loop thread (a blocking call would wait for itself)."""
        return threading.get_ident() == self._ident

    def call_soon(self, func: Callable[[], object]) -> None:
        """Run ``func()`` on the loop without waiting (at once when already on it)."""
        if self.in_loop_thread():
            func()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to run
                self._loop.call_soon_threadsafe(func)

    def call(self, func: Callable[_P, Awaitable[_T]], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run ``await func(*args, **kwargs)`` on the loop and return its result.

        Raises:
            ClientClosedError: the loop is closed, or was closed while the call ran.
            RuntimeError: called from the loop thread itself (e.g. from an ``on_event``
                callback), where it would wait for itself forever.
            BaseException: whatever the call raised; an exception raised in this thread while
                waiting (``KeyboardInterrupt``) after the call was cancelled and cleaned up.
        """
        if self.in_loop_thread():
            raise RuntimeError(
                "a blocking Client call was made on the client's own event-loop thread (from an "
                "on_event callback?); it would wait for itself forever"
            )
        if os.getpid() != self._pid:
            raise RuntimeError(
                "this Client was created in another process (before a fork) and cannot be used "
                "here: create the Client in each process (e.g. in each web server worker)"
            )
        # The outcome, written on the loop thread before ``finished`` is released: a plain lock
        # is the cheapest one-shot signal between threads (and Ctrl-C interrupts its acquire).
        outcome: list[Any] = []
        finished = threading.Lock()
        finished.acquire()
        # Loop-thread state: whether start() ran, and the task it made.
        began: list[bool] = []
        started: list[asyncio.Future[None]] = []

        async def run() -> None:
            # Reports from inside the task: the caller wakes in the iteration the call ends in,
            # not one later through a done callback.
            try:
                result = await func(*args, **kwargs)
            except asyncio.CancelledError:
                outcome.append(
                    ClientClosedError("the Client was closed while this call was running")
                )
            except BaseException as exc:
                outcome.append(exc)
            else:
                outcome.extend((None, result))
            finally:
                finished.release()

        def done(task: asyncio.Future[None]) -> None:
            self._tasks.discard(task)
            if task.cancelled() and not outcome:
                # Cancelled before its first step: run() never ran, so it reported nothing.
                outcome.append(
                    ClientClosedError("the Client was closed while this call was running")
                )
                finished.release()

        def start() -> None:
            began.append(True)
            task = asyncio.ensure_future(run())
            started.append(task)
            self._tasks.add(task)
            task.add_done_callback(done)

        def cancel() -> None:
            # Runs after start() if start() was scheduled at all (callbacks run in order).
            if started:
                started[0].cancel()
            elif not began:
                outcome.append(ClientClosedError("the call was cancelled before it started"))
                finished.release()

        if self._closed:
            raise ClientClosedError("this Client is closed; create a new one")
        try:
            # Under the lock, so that close() sees every task scheduled before it.
            with self._lock:
                if self._closed:
                    raise ClientClosedError("this Client is closed; create a new one")
                self._loop.call_soon_threadsafe(start)
            finished.acquire()
        except BaseException:
            # Interrupted here (Ctrl-C), possibly even while scheduling: cancel the work and
            # wait until it has cleaned up. A second Ctrl-C stops the waiting.
            if not outcome:
                self.call_soon(cancel)
                # Checked now and then: a loop stopped by close() runs no more callbacks.
                while not finished.acquire(timeout=0.1) and not self._loop.is_closed():
                    pass
            raise
        if outcome[0] is not None:
            error: BaseException = outcome[0]
            try:
                raise error
            finally:
                del error, outcome[:]  # no reference cycle through the traceback
        result: _T = outcome[1]
        return result

    def iterate(self, source: AsyncIterator[_T]) -> Iterator[_T]:
        """Iterate an async iterator from this thread, one loop round trip per item.

        Closing the returned iterator (``break``, garbage collection) closes ``source``.
        """
        try:
            while True:
                try:
                    item = self.call(source.__anext__)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose: Callable[[], Awaitable[object]] | None = getattr(source, "aclose", None)
            if aclose is not None:
                if self.in_loop_thread():  # collected on the loop thread: close it there
                    self._loop.create_task(aclose())  # type: ignore[arg-type]
                else:
                    with contextlib.suppress(ClientClosedError):
                        self.call(aclose)

    def close(self, cleanup: Callable[[], Awaitable[object]] | None = None) -> None:
        """Cancel the calls in flight, run ``cleanup()`` on the loop, stop it. Idempotent.

        Called on the loop thread (a finalizer run by the garbage collector there), the work is
        handed to a short-lived thread.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if os.getpid() != self._pid:
            return  # a forked child: the thread and its loop exist only in the parent
        if self.in_loop_thread():
            threading.Thread(target=self._shutdown, args=(cleanup,), daemon=True).start()
        else:
            self._shutdown(cleanup)

    def _shutdown(self, cleanup: Callable[[], Awaitable[object]] | None) -> None:
        async def stop() -> None:
            pending = [task for task in self._tasks if not task.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if cleanup is not None:
                await cleanup()

        try:
            self._portal.call(stop)
        finally:
            # Stops the portal, ends the loop (its default executor too) and joins the thread.
            self._cm.__exit__(None, None, None)
