"""What every async handle shares: the blocking handle it wraps, closing, and waiting.

An async handle holds one blocking handle of the same structure (so one engine per
directory per process, owner or client, exactly as the blocking API) and calls it
directly on the event loop for every call that cannot wait: a put, a dequeue that
finds an item, an ack, a peek take tens of microseconds on the owner, or one round trip
over the directory's socket on a client (see docs/asyncio.md for the figures). Only
the calls that wait for an item go through a :class:`~.waiting.Dispatcher`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, Optional, TypeVar

from .._checks import check_timeout
from ..codecs import CodecSpec
from ..errors import AsyncEmpty, Closed, Empty
from ..item import Item
from ..structures.handle import Handle, watch
from .waiting import Dispatcher

PathLike = str | os.PathLike[str]
H = TypeVar("H", bound=Handle)
T = TypeVar("T")


def nothing(exc: Empty) -> AsyncEmpty:
    """The ``Empty`` of an async call: also an ``asyncio.QueueEmpty``."""
    return AsyncEmpty(str(exc))


def now(call: Callable[[], T]) -> T:
    """``call()``, a take or peek that does not wait, with ``Empty`` as ``AsyncEmpty``."""
    try:
        return call()
    except Empty as exc:
        raise nothing(exc) from None


class AsyncHandle(Generic[H]):
    """Base of the async structures: owns the blocking handle and the dispatchers."""

    _opens: type[H]

    def __init__(self, path: PathLike, *, codec: CodecSpec = "msgpack", sync: bool = False,
                 maxsize: int = 0, mode: int = 0o700, connect_timeout: float = 10.0) -> None:
        self._q: H = self._open(path, codec=codec, sync=sync, maxsize=maxsize, mode=mode,
                                connect_timeout=connect_timeout)
        self._dispatchers: dict[Hashable, Dispatcher[Any]] = {}
        self._closed = False

    def _open(self, path: PathLike, **options: Any) -> H:
        """Open the blocking handle this one wraps (opening may wait for the directory's
        holder, up to ``connect_timeout``: it is made once, before the handle is used)."""
        return self._opens(path, **options)

    # -- lifecycle -------------------------------------------------------------
    @property
    def blocking(self) -> H:
        """The blocking handle this one wraps (same directory, same engine): for a
        thread of your own, or for reads the async API leaves out (iterating without
        removing)."""
        return self._q

    @property
    def path(self) -> str:
        """The directory's real path."""
        return self._q.path

    @property
    def role(self) -> str:
        """``"owner"`` or ``"client"``, as the blocking handle's."""
        return self._q.role

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def maxsize(self) -> int:
        """The bound ``put`` waits under (0: none); may be reassigned."""
        return self._q.maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        self._q.maxsize = value

    def _live(self) -> H:
        if self._closed:
            raise Closed(f"{self._q.path} is closed; open it again to use it")
        return self._q

    async def close(self) -> None:
        """Close this handle; idempotent. Tasks still waiting get ``Closed``; an item
        taken for one of them meanwhile goes back first. Later calls raise ``Closed``."""
        if self._closed:
            return
        self._closed = True
        for dispatcher in list(self._dispatchers.values()):
            await dispatcher.close()
        self._q.close()

    async def drop(self) -> None:
        """Close, then delete the directory with everything in it."""
        await self.close()
        self._q.drop()

    async def clear(self) -> None:
        """Remove every item, reserved ones included. Ids keep counting."""
        self._live().clear()

    async def __aenter__(self: T) -> T:
        """The handle itself: ``async with AsyncQueue(path) as q:`` closes it on leaving."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the handle (see :meth:`close`); an exception in the block propagates."""
        await self.close()

    def __len__(self) -> int:
        """Ready items (a direct call: ``len()`` cannot be awaited)."""
        return len(self._live())

    def __bool__(self) -> bool:
        """True when an item is ready (``len(self) > 0``); ``Closed`` after ``close()``."""
        return len(self) > 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._q)} items"
        return f"<{type(self).__name__} {self._q.path!r} {state}>"

    # -- waiting -----------------------------------------------------------------
    def _dispatcher(self, key: Hashable, take: Callable[[float], Any],
                    give_back: Callable[[Any], None]) -> Dispatcher[Any]:
        dispatcher = self._dispatchers.get(key)
        if dispatcher is None:
            name = f"diskqueue.aio {os.path.basename(self._q.path)} {key!r}"
            q = self._q
            dispatcher = self._dispatchers[key] = Dispatcher(
                take, give_back, name, lambda callback: watch(q, callback))
        return dispatcher

    def _taking(self, key: Hashable, block: bool, timeout: Optional[float],
                nowait: Callable[[], T], take: Callable[[float], Any],
                give_back: Callable[[Any], None], accept: Callable[[Any], T]
                ) -> Awaitable[T]:
        """A take that may wait: at once when an item is there and nobody waits before
        this task, else through the dispatcher of ``key``. Not a coroutine itself, so
        that a waiting task holds one frame less (10,000 of them add up)."""
        self._live()
        timeout = check_timeout(block, timeout)
        first = True
        if not block or self._idle(key):
            try:
                return done(nowait())
            except Empty as exc:
                if not block:
                    raise nothing(exc) from None
            first = False
        return self._dispatcher(key, take, give_back).wait(timeout, nowait, accept, first)

    def _idle(self, key: Hashable) -> bool:
        """True when no task waits for this kind of take (and no item is on its way
        back): a take may then go straight to the structure."""
        dispatcher = self._dispatchers.get(key)
        return dispatcher is None or not dispatcher.busy

    def _waiting(self, key: Hashable, timeout: Optional[float], first: bool,
                 nowait: Callable[[], T], take: Callable[[float], Any],
                 give_back: Callable[[Any], None], accept: Callable[[Any], T]
                 ) -> Awaitable[T]:
        """Wait through the dispatcher of ``key`` (``first``: try ``nowait`` first; False:
        the caller just found nothing with it)."""
        self._live()
        return self._dispatcher(key, take, give_back).wait(timeout, nowait, accept, first)


def done(result: T) -> asyncio.Future[T]:
    """An awaitable that has ``result`` already."""
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    future.set_result(result)
    return future


def unbounded(handle: H, put: Callable[[H], Any]) -> None:
    """``put(handle)`` past ``maxsize``: an item given back had its place already, and a
    put that raised ``Full`` would lose it. (``maxsize`` is the handle's own attribute,
    set back at once; the dispatcher thread only takes.)"""
    bound, handle.maxsize = handle.maxsize, 0
    try:
        put(handle)
    finally:
        handle.maxsize = bound


def unreserved(item: Item) -> Item:
    """A reserved item as a dequeue returns it (``attempts`` 0)."""
    return Item(item.id, item.key, item.value, item.priority, item.prefix, 0)
