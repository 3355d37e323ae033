"""``AsyncQueue``, ``AsyncStack``, ``AsyncPriorityQueue``, ``AsyncPrefixQueue``.

The same constructor arguments and methods as the blocking classes, as coroutines, on
the same directories: an async and a blocking handle may share one, in one process or
across processes. How a waiting take gives its item back when nobody accepts it:

- Queue, PriorityQueue, PrefixQueue: the dispatcher *reserves* the item; the task acks
  it (a dequeue) or keeps the reservation (a reserve); unaccepted, it is nacked to the
  front, where it was. Its ``attempts`` count keeps that reservation.
- Stack: the dispatcher pops the top; unaccepted, it is pushed again, on top, where it
  was (with the same id unless another push came between).
- ``PriorityQueue.dequeue_by_priority`` (no reservation names one level): popped, and
  unaccepted, enqueued again at its level, so at the *back* of that level.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, Optional

from .._checks import check_lease, check_timeout
from ..codecs import CodecSpec
from ..errors import AsyncEmpty, Empty
from ..item import Item
from ..structures.fifo import Queue, Stack
from ..structures.prefix import PrefixQueue
from ..structures.priority import PriorityQueue
from .face import AsyncQueueFace
from .handle import AsyncHandle, PathLike, nothing, now, unreserved

# The lease of a reservation a dispatcher makes for a task that dequeues: it only has to
# outlast the hand-over to the task (microseconds) on a loop that may be busy.
HANDOVER_LEASE = 600.0


class _Draining:
    """``async for``: take until empty, or with ``wait=True`` for ever."""

    async def _next(self, wait: bool, timeout: Optional[float]) -> Item:
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[Item]:
        """Dequeue (pop) items until the structure is empty."""
        return self.consume()

    async def consume(self, *, wait: bool = False,
                      timeout: Optional[float] = None) -> AsyncIterator[Item]:
        """Dequeue (pop) items one by one: until empty, or with ``wait=True`` for ever
        (or until ``timeout`` seconds pass without an item)."""
        while True:
            try:
                item = await self._next(wait, timeout)
            except Empty:
                return
            yield item


class _Reliable(AsyncHandle[Any]):
    """``ack``/``nack``/``in_flight`` as coroutines."""

    async def ack(self, item_or_id: Item | int) -> None:
        """Delete a reserved item for good (``NotReserved`` if it is not reserved)."""
        self._live().ack(item_or_id)

    async def nack(self, item_or_id: Item | int, *, front: bool = True) -> None:
        """Return a reserved item: to the front, or to the back with ``front=False``."""
        self._live().nack(item_or_id, front=front)

    async def in_flight(self) -> int:
        """How many items are reserved and not yet acked or nacked."""
        return self._live().in_flight()  # type: ignore[no-any-return]

    def _acked(self, item: Item) -> Item:
        """Accept a hand-over reservation as a dequeue: delete it, attempts 0."""
        self._q.ack(item)
        return unreserved(item)

    def _nacked(self, item: Item) -> None:
        self._q.nack(item, front=True)


class _Line(AsyncHandle[Any], _Draining, AsyncQueueFace):
    """What AsyncQueue and AsyncStack share: reads by place or id, and the face."""

    _q: Queue | Stack

    async def _take_one(self, block: bool, timeout: Optional[float]) -> Item:
        """Dequeue (Queue) or pop (Stack) one item."""
        raise NotImplementedError

    async def peek(self, *, raw: bool = False) -> Item:
        """The item the next dequeue/pop would return, left in place."""
        return now(lambda: self._live().peek(raw=raw))

    async def peek_by_offset(self, offset: int, *, raw: bool = False) -> Item:
        """The item ``offset`` places from the head (Queue) or top (Stack)."""
        return now(lambda: self._live().peek_by_offset(offset, raw=raw))

    async def peek_by_id(self, id: int, *, raw: bool = False) -> Item:
        """The ready item with this id (``OutOfBounds`` if none)."""
        return now(lambda: self._live().peek_by_id(id, raw=raw))

    async def update(self, id: int, value: Any) -> Item:
        """Replace the value of a ready item, keeping its place and id."""
        return self._live().update(id, value)

    async def _next(self, wait: bool, timeout: Optional[float]) -> Item:
        return await self._take_one(wait, timeout)

    # the asyncio.Queue face
    def _face(self) -> Queue | Stack:
        return self._live()

    async def get(self) -> Any:
        """Remove and return the next value, waiting for one. Cancelled, it took nothing
        (or gave its item back at once)."""
        return (await self._take_one(True, None)).value


class AsyncQueue(_Line, _Reliable):
    """A FIFO queue in a directory, for asyncio; also a stand-in for
    :class:`asyncio.Queue`. See :class:`diskqueue.Queue` for each method."""

    _q: Queue

    _opens = Queue

    async def enqueue(self, value: Any) -> Item:
        """Append a value at the tail."""
        return self._live().enqueue(value)

    async def enqueue_many(self, values: Iterable[Any]) -> list[Item]:
        """Append several values atomically: all of them, or none."""
        return self._live().enqueue_many(values)

    async def dequeue(self, *, block: bool = False, timeout: Optional[float] = None,
                      raw: bool = False) -> Item:
        """Remove and return the head; ``AsyncEmpty`` if there is none (after waiting
        ``timeout`` seconds with ``block=True``; None: for ever). Cancelled while waiting,
        it took nothing, or its item is back at the head."""
        # The hot path, written out: what self._taking(...) does.
        timeout = check_timeout(block, timeout)
        if not block or self._idle(("dequeue", raw)):
            try:
                return self._live().dequeue(raw=raw)
            except Empty as exc:
                if not block:
                    raise nothing(exc) from None
        q = self._q
        return await self._waiting(
            ("dequeue", raw), timeout,
            lambda s: q.reserve(lease=HANDOVER_LEASE, block=True, timeout=s, raw=raw),
            self._nacked, self._acked)

    async def dequeue_many(self, n: int, *, block: bool = False,
                           timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove up to ``n`` items from the head atomically (with ``block``: waiting for
        the first, then taking up to ``n - 1`` more that are there)."""
        q = self._live()

        def accept(item: Item) -> list[Item]:
            first = self._acked(item)
            try:
                return [first, *q.dequeue_many(n - 1, raw=raw)]
            except Empty:
                return [first]

        if not block or n == 0:
            return now(lambda: q.dequeue_many(n, raw=raw))
        return await self._taking(
            ("dequeue", raw), True, timeout, lambda: q.dequeue_many(n, raw=raw),
            lambda s: q.reserve(lease=HANDOVER_LEASE, block=True, timeout=s, raw=raw),
            self._nacked, accept)

    async def reserve(self, *, lease: float = 30.0, block: bool = False,
                      timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Take the head into the in-flight set until ``ack``/``nack`` or the lease ends.
        Cancelled while waiting, it reserved nothing (or nacked it to the front)."""
        lease = check_lease(lease)
        q = self._live()
        return await self._taking(
            ("reserve", lease, raw), block, timeout,
            lambda: q.reserve(lease=lease, raw=raw),
            lambda s: q.reserve(lease=lease, block=True, timeout=s, raw=raw),
            self._nacked, _same)

    async def _take_one(self, block: bool, timeout: Optional[float]) -> Item:
        return await self.dequeue(block=block, timeout=timeout)


class AsyncStack(_Line):
    """A LIFO stack in a directory, for asyncio; also a stand-in for
    :class:`asyncio.LifoQueue`. See :class:`diskqueue.Stack` for each method."""

    _q: Stack

    _opens = Stack

    async def push(self, value: Any) -> Item:
        """Put a value on top."""
        return self._live().push(value)

    async def push_many(self, values: Iterable[Any]) -> list[Item]:
        """Put several values on top atomically; the last one ends on top."""
        return self._live().push_many(values)

    def _pushed_back(self, item: Item) -> None:
        self._q.push(item.value)

    def _refuse_raw(self, raw: bool) -> None:
        if raw:
            # A popped item is given back by pushing its value, through the codec.
            raise ValueError("AsyncStack cannot wait with raw=True; pop(raw=True) without "
                             "block takes an undecodable top")

    async def pop(self, *, block: bool = False, timeout: Optional[float] = None,
                  raw: bool = False) -> Item:
        """Remove and return the top item; ``AsyncEmpty`` if there is none (after waiting,
        with ``block=True``). Cancelled while waiting, it took nothing, or its item is
        back on top."""
        timeout = check_timeout(block, timeout)
        if block:
            self._refuse_raw(raw)
        if not block or self._idle("pop"):
            try:
                return self._live().pop(raw=raw)
            except Empty as exc:
                if not block:
                    raise nothing(exc) from None
        q = self._q
        return await self._waiting("pop", timeout, lambda s: q.pop(block=True, timeout=s),
                                   self._pushed_back, _same)

    async def pop_many(self, n: int, *, block: bool = False,
                       timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove up to ``n`` items from the top atomically (with ``block``: waiting for
        the first, then taking up to ``n - 1`` more that are there)."""
        q = self._live()
        if not block or n == 0:
            return now(lambda: q.pop_many(n, raw=raw))
        self._refuse_raw(raw)

        def accept(item: Item) -> list[Item]:
            try:
                return [item, *q.pop_many(n - 1)]
            except Empty:
                return [item]

        return await self._taking(
            "pop", True, timeout, lambda: q.pop_many(n),
            lambda s: q.pop(block=True, timeout=s), self._pushed_back, accept)

    async def _take_one(self, block: bool, timeout: Optional[float]) -> Item:
        return await self.pop(block=block, timeout=timeout)


class AsyncPriorityQueue(_Reliable, _Draining, AsyncQueueFace):
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
        return self._live().enqueue(priority, value)

    async def enqueue_many(self, pairs: Iterable[tuple[int, Any]]) -> list[Item]:
        """Add ``(priority, value)`` pairs atomically: all of them, or none."""
        return self._live().enqueue_many(pairs)

    def _taking_first(self, raw: bool) -> Any:
        q = self._q
        return lambda s: q.reserve(lease=HANDOVER_LEASE, block=True, timeout=s, raw=raw)

    async def dequeue(self, *, block: bool = False, timeout: Optional[float] = None,
                      raw: bool = False) -> Item:
        """Remove the first item of the first level; cancelled while waiting, it took
        nothing, or its item is back at the front of its level."""
        timeout = check_timeout(block, timeout)
        if not block or self._idle(("dequeue", raw)):
            try:
                return self._live().dequeue(raw=raw)
            except Empty as exc:
                if not block:
                    raise nothing(exc) from None
        return await self._waiting(("dequeue", raw), timeout, self._taking_first(raw),
                                   self._nacked, self._acked)

    async def dequeue_many(self, n: int, *, block: bool = False,
                           timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove up to ``n`` items across levels atomically (with ``block``: waiting for
        the first, then taking up to ``n - 1`` more that are there)."""
        q = self._live()
        if not block or n == 0:
            return now(lambda: q.dequeue_many(n, raw=raw))

        def accept(item: Item) -> list[Item]:
            first = self._acked(item)
            try:
                return [first, *q.dequeue_many(n - 1, raw=raw)]
            except Empty:
                return [first]

        return await self._taking(("dequeue", raw), True, timeout,
                                  lambda: q.dequeue_many(n, raw=raw), self._taking_first(raw),
                                  self._nacked, accept)

    async def dequeue_by_priority(self, priority: int, *, block: bool = False,
                                  timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Remove the first item of one level. Cancelled while waiting, it took nothing,
        or its item is back in its level, at the back (no reservation names one level:
        use ``reserve`` where the place matters)."""
        q = self._live()
        if block and raw:
            raise ValueError("dequeue_by_priority cannot wait with raw=True; without block "
                             "it takes an undecodable item")
        q.length(priority)  # a bad priority is refused here, before any wait

        def give_back(item: Item) -> None:
            q.enqueue(priority, item.value)

        return await self._taking(
            ("by_priority", priority), block, timeout,
            lambda: q.dequeue_by_priority(priority, raw=raw),
            lambda s: q.dequeue_by_priority(priority, block=True, timeout=s),
            give_back, _same)

    async def reserve(self, *, lease: float = 30.0, block: bool = False,
                      timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Take the next item into the in-flight set; cancelled while waiting, it reserved
        nothing (or nacked it to the front)."""
        lease = check_lease(lease)
        q = self._live()
        return await self._taking(
            ("reserve", lease, raw), block, timeout, lambda: q.reserve(lease=lease, raw=raw),
            lambda s: q.reserve(lease=lease, block=True, timeout=s, raw=raw),
            self._nacked, _same)

    async def peek(self, *, raw: bool = False) -> Item:
        return now(lambda: self._live().peek(raw=raw))

    async def peek_by_offset(self, offset: int, *, raw: bool = False) -> Item:
        """The item ``offset`` places into the dequeue order, across levels."""
        return now(lambda: self._live().peek_by_offset(offset, raw=raw))

    async def peek_by_priority_id(self, priority: int, id: int, *, raw: bool = False) -> Item:
        return self._live().peek_by_priority_id(priority, id, raw=raw)

    async def update(self, priority: int, id: int, value: Any) -> Item:
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
                                     lambda: q.get(block=False), self._taking_first(False),
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


class AsyncPrefixQueue(_Reliable, _Draining):
    """Many FIFO queues, one per prefix, in one directory, for asyncio. See
    :class:`diskqueue.PrefixQueue` for each method. Tasks awaiting different prefixes
    use one dispatcher (and, while they wait, one thread) per prefix."""

    _q: PrefixQueue

    _opens = PrefixQueue

    async def enqueue(self, prefix: str | bytes, value: Any) -> Item:
        return self._live().enqueue(prefix, value)

    async def enqueue_many(self, prefix: str | bytes, values: Iterable[Any]) -> list[Item]:
        """Append several values to one prefix atomically."""
        return self._live().enqueue_many(prefix, values)

    async def dequeue(self, prefix: str | bytes, *, block: bool = False,
                      timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Remove the first item of one prefix; cancelled while waiting, it took nothing,
        or its item is back at the front of its prefix."""
        q = self._live()
        timeout = check_timeout(block, timeout)
        if not block or self._idle(("dequeue", _lane(prefix), raw)):
            try:
                return q.dequeue(prefix, raw=raw)
            except Empty as exc:
                if not block:
                    raise nothing(exc) from None
        return await self._waiting(
            ("dequeue", _lane(prefix), raw), timeout,
            lambda s: q.reserve(prefix, lease=HANDOVER_LEASE, block=True, timeout=s, raw=raw),
            self._nacked, self._acked)

    async def dequeue_many(self, prefix: str | bytes, n: int, *, block: bool = False,
                           timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove up to ``n`` items of one prefix atomically (with ``block``: waiting for
        the first, then taking up to ``n - 1`` more that are there)."""
        q = self._live()
        if not block or n == 0:
            return now(lambda: q.dequeue_many(prefix, n, raw=raw))

        def accept(item: Item) -> list[Item]:
            first = self._acked(item)
            try:
                return [first, *q.dequeue_many(prefix, n - 1, raw=raw)]
            except Empty:
                return [first]

        return await self._taking(
            ("dequeue", _lane(prefix), raw), True, timeout,
            lambda: q.dequeue_many(prefix, n, raw=raw),
            lambda s: q.reserve(prefix, lease=HANDOVER_LEASE, block=True, timeout=s, raw=raw),
            self._nacked, accept)

    async def reserve(self, prefix: str | bytes, *, lease: float = 30.0, block: bool = False,
                      timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Take the first item of one prefix into the in-flight set; cancelled while
        waiting, it reserved nothing (or nacked it to the front)."""
        lease = check_lease(lease)
        q = self._live()
        return await self._taking(
            ("reserve", _lane(prefix), lease, raw), block, timeout,
            lambda: q.reserve(prefix, lease=lease, raw=raw),
            lambda s: q.reserve(prefix, lease=lease, block=True, timeout=s, raw=raw),
            self._nacked, _same)

    async def peek(self, prefix: str | bytes, *, raw: bool = False) -> Item:
        return now(lambda: self._live().peek(prefix, raw=raw))

    async def peek_by_offset(self, prefix: str | bytes, offset: int, *,
                             raw: bool = False) -> Item:
        return now(lambda: self._live().peek_by_offset(prefix, offset, raw=raw))

    async def peek_by_id(self, prefix: str | bytes, id: int, *, raw: bool = False) -> Item:
        return self._live().peek_by_id(prefix, id, raw=raw)

    async def update(self, prefix: str | bytes, id: int, value: Any) -> Item:
        return self._live().update(prefix, id, value)

    async def length(self, prefix: str | bytes) -> int:
        return self._live().length(prefix)

    async def prefixes(self) -> list[bytes]:
        """Prefixes holding ready items, sorted by their bytes."""
        return self._live().prefixes()

    async def _next(self, wait: bool, timeout: Optional[float]) -> Item:
        if wait:
            raise TypeError("AsyncPrefixQueue waits on one prefix: "
                            "use consume_prefix(prefix, wait=True)")
        q = self._live()
        for prefix in q.prefixes():
            try:
                return q.dequeue(prefix)
            except Empty:
                continue
        raise AsyncEmpty(f"{q.path}: empty")

    async def consume_prefix(self, prefix: str | bytes, *, wait: bool = False,
                             timeout: Optional[float] = None) -> AsyncIterator[Item]:
        """Dequeue the items of one prefix: until it is empty, or with ``wait=True`` for
        ever (or until ``timeout`` seconds pass without an item)."""
        while True:
            try:
                item = await self.dequeue(prefix, block=wait, timeout=timeout)
            except Empty:
                return
            yield item


def _lane(prefix: Any) -> bytes:
    """A prefix as the bytes that name its queue (``"a"`` and ``b"a"`` are one)."""
    if isinstance(prefix, str):
        return prefix.encode("utf-8")
    if isinstance(prefix, (bytes, bytearray, memoryview)):
        return bytes(prefix)
    raise TypeError(f"prefix must be str or bytes, not {type(prefix).__name__}")


def _same(item: Item) -> Item:
    return item
