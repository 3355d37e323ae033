"""What the async structures share beyond the handle: ``async for``, and
``ack``/``nack``/``in_flight`` with the hand-over reservations behind waiting dequeues."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from typing import Any, Optional

from .._checks import check_lease, check_timeout
from ..errors import Empty
from ..item import Item
from .handle import AsyncHandle, nothing, now, unreserved

# The lease of a reservation a dispatcher's thread makes for a task that dequeues (in a
# client process): it only has to outlast the hand-over to the task (microseconds) on a
# loop that may be busy.
HANDOVER_LEASE = 600.0


class Draining(abc.ABC):
    """``async for``: take until empty, or with ``wait=True`` for ever."""

    @abc.abstractmethod
    async def _next(self, wait: bool, timeout: Optional[float]) -> Item:
        """Take the next item (waiting with ``wait``); ``Empty`` when there is none."""

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


class Reliable(AsyncHandle[Any]):
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


def same(item: Item) -> Item:
    """The item as it is (the default ``accept`` of a take)."""
    return item


class HeadTakes(Reliable):
    """``dequeue``, ``dequeue_many`` and ``reserve`` of a Queue and a PriorityQueue: the
    next item in dequeue order (the head; the first of the first level)."""

    async def dequeue(self, *, block: bool = False, timeout: Optional[float] = None,
                      raw: bool = False) -> Item:
        """Remove and return the next item; ``AsyncEmpty`` if there is none (after
        waiting ``timeout`` seconds with ``block=True``; None: for ever). Cancelled while
        waiting, it took nothing, or its item is back at the front."""
        # The hot path, written out: what self._taking(...) does.
        timeout = check_timeout(block, timeout)
        first = True
        if not block or self._idle(("dequeue", raw)):
            try:
                return self._live().dequeue(raw=raw)  # type: ignore[no-any-return]
            except Empty as exc:
                if not block:
                    raise nothing(exc) from None
            first = False
        q = self._q
        return await self._waiting(("dequeue", raw), timeout, first,
                                   lambda: q.dequeue(raw=raw), self._handing_over(raw),
                                   self._nacked, self._acked)

    def _handing_over(self, raw: bool) -> Callable[[float], Item]:
        """The dispatcher's take for waiting dequeues: a reservation to hand over."""
        q = self._q
        return lambda s: q.reserve(lease=HANDOVER_LEASE, block=True, timeout=s, raw=raw)

    async def dequeue_many(self, n: int, *, block: bool = False,
                           timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove up to ``n`` items in dequeue order atomically (with ``block``: waiting
        for the first, then taking up to ``n - 1`` more that are there)."""
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
                                  lambda: q.dequeue_many(n, raw=raw), self._handing_over(raw),
                                  self._nacked, accept)

    async def reserve(self, *, lease: float = 30.0, block: bool = False,
                      timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Take the next item into the in-flight set until ``ack``/``nack`` or the lease
        ends. Cancelled while waiting, it reserved nothing (or nacked it to the front)."""
        lease = check_lease(lease)
        q = self._live()
        return await self._taking(
            ("reserve", lease, raw), block, timeout, lambda: q.reserve(lease=lease, raw=raw),
            lambda s: q.reserve(lease=lease, block=True, timeout=s, raw=raw),
            self._nacked, same)
