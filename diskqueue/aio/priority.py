"""``AsyncPriorityQueue``: :class:`diskqueue.PriorityQueue` for asyncio.

In a client process, where the dispatcher's thread takes for the waiting tasks (see
:mod:`.waiting`), a waiting dequeue is handed a reservation, nacked to the front of its
level when no task accepts it. ``dequeue_by_priority`` cannot reserve one level: an item
it took and nobody accepted is enqueued again at its level, so at the *back* of that
level.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional

from ..codecs import CodecSpec
from ..errors import Empty
from ..item import Item
from ..structures.priority import PriorityQueue
from .common import Draining, HeadTakes, same
from .face import AsyncQueueFace
from .handle import PathLike, now, unbounded


class AsyncPriorityQueue(HeadTakes, Draining, AsyncQueueFace):
    """Items ordered by an int priority, for asyncio; also a stand-in for
    :class:`asyncio.PriorityQueue` whose items are ``(priority, value)`` tuples. See
    :class:`diskqueue.PriorityQueue` for each method."""

    _q: PriorityQueue

    def __init__(self, path: PathLike, *, order: str = "asc", codec: CodecSpec = "msgpack",
                 sync: bool = False, maxsize: int = 0, mode: int = 0o700,
                 connect_timeout: float = 10.0) -> None:
        self._order = order
        super().__init__(path, codec=codec, sync=sync, maxsize=maxsize, mode=mode,
                         connect_timeout=connect_timeout)

    def _open(self, path: PathLike, **options: Any) -> PriorityQueue:
        return PriorityQueue(path, order=self._order, **options)

    @property
    def order(self) -> str:
        """``"asc"`` (lowest number first) or ``"desc"``."""
        return self._q.order

    async def enqueue(self, priority: int, value: Any) -> Item:
        """Append ``value`` at ``priority`` (an int, lower first); its item. Raises as the
        blocking ``enqueue`` does."""
        return self._live().enqueue(priority, value)

    async def enqueue_many(self, pairs: Iterable[tuple[int, Any]]) -> list[Item]:
        """Add ``(priority, value)`` pairs atomically: all of them, or none."""
        return self._live().enqueue_many(pairs)

    async def dequeue_by_priority(self, priority: int, *, block: bool = False,
                                  timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Remove the first item of one level. Cancelled while waiting, it took nothing,
        or (in a client process) its item is back in its level, at the back (no
        reservation names one level: use ``reserve`` where the place matters)."""
        q = self._live()
        if block and raw:
            raise ValueError("dequeue_by_priority cannot wait with raw=True; without block "
                             "it takes an undecodable item")
        q.length(priority)  # a bad priority is refused here, before any wait

        def give_back(item: Item) -> None:
            unbounded(q, lambda q: q.enqueue(priority, item.value))

        return await self._taking(
            ("by_priority", priority), block, timeout,
            lambda: q.dequeue_by_priority(priority, raw=raw),
            lambda s: q.dequeue_by_priority(priority, block=True, timeout=s),
            give_back, same)

    async def peek(self, *, raw: bool = False) -> Item:
        """The next item in priority order without taking it; ``Empty`` when there is none."""
        return now(lambda: self._live().peek(raw=raw))

    async def peek_by_offset(self, offset: int, *, raw: bool = False) -> Item:
        """The item ``offset`` places into the dequeue order, across levels."""
        return now(lambda: self._live().peek_by_offset(offset, raw=raw))

    async def peek_by_priority_id(self, priority: int, id: int, *, raw: bool = False) -> Item:
        """The ready item with this priority and id; ``OutOfBounds`` when there is none."""
        return self._live().peek_by_priority_id(priority, id, raw=raw)

    async def update(self, priority: int, id: int, value: Any) -> Item:
        """Replace the value of a ready item; the updated item. Raises as the blocking
        ``update`` does."""
        return self._live().update(priority, id, value)

    async def length(self, priority: int) -> int:
        """Ready items at one level."""
        return self._live().length(priority)

    async def priorities(self) -> list[int]:
        """Non-empty levels in dequeue order."""
        return self._live().priorities()

    async def _next(self, wait: bool, timeout: Optional[float]) -> Item:
        return await self.dequeue(block=wait, timeout=timeout)

    # the asyncio.PriorityQueue face: get() returns what put() was given, as the
    # blocking face's get() does; so the item a waiting get was handed is nacked to the
    # front again and taken with that get() (on the loop, nothing between the two).
    def _face(self) -> PriorityQueue:
        return self._live()

    async def get(self) -> Any:
        """Remove and return the next item as ``put`` was given it (a ``(priority,
        value)`` pair for a value enqueued at a priority), waiting for one."""
        q = self._live()
        while True:
            got = await self._taking(("dequeue", False), True, None,
                                     lambda: q.get(block=False), self._handing_over(False),
                                     self._nacked, self._regot)
            if got is not _TAKEN_MEANWHILE:
                return got

    def _regot(self, item: Item) -> Any:
        self._q.nack(item, front=True)
        try:
            return self._q.get(block=False)
        except Empty:  # another thread of this process took it between the two
            return _TAKEN_MEANWHILE


_TAKEN_MEANWHILE = object()


