"""``AsyncPrefixQueue``: :class:`diskqueue.PrefixQueue` for asyncio; tasks awaiting
different prefixes use one dispatcher per prefix (in a client process, one thread per
prefix while they wait)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, Optional

from .._checks import check_lease, check_timeout
from ..errors import AsyncEmpty, Empty
from ..item import Item
from ..structures.prefix import PrefixQueue
from .common import HANDOVER_LEASE, Draining, Reliable, same
from .handle import nothing, now


class AsyncPrefixQueue(Reliable, Draining):
    """Many FIFO queues, one per prefix, in one directory, for asyncio. See
    :class:`diskqueue.PrefixQueue` for each method. Tasks awaiting different prefixes
    use one dispatcher per prefix (in a client process, one thread per prefix while
    they wait)."""

    _q: PrefixQueue

    _opens = PrefixQueue

    async def enqueue(self, prefix: str | bytes, value: Any) -> Item:
        """Append ``value`` under ``prefix``; its :class:`~diskqueue.Item`. Raises as the
        blocking ``enqueue`` does."""
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
        first = True
        if not block or self._idle(("dequeue", _lane(prefix), raw)):
            try:
                return q.dequeue(prefix, raw=raw)
            except Empty as exc:
                if not block:
                    raise nothing(exc) from None
            first = False
        return await self._waiting(
            ("dequeue", _lane(prefix), raw), timeout, first,
            lambda: q.dequeue(prefix, raw=raw),
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
            self._nacked, same)

    async def peek(self, prefix: str | bytes, *, raw: bool = False) -> Item:
        """The next item of ``prefix`` without taking it; ``Empty`` when it has none."""
        return now(lambda: self._live().peek(prefix, raw=raw))

    async def peek_by_offset(self, prefix: str | bytes, offset: int, *,
                             raw: bool = False) -> Item:
        """The item ``offset`` places from the front of ``prefix``; ``OutOfBounds`` past its end."""
        return now(lambda: self._live().peek_by_offset(prefix, offset, raw=raw))

    async def peek_by_id(self, prefix: str | bytes, id: int, *, raw: bool = False) -> Item:
        """The ready item of ``prefix`` with this id; ``OutOfBounds`` when there is none."""
        return self._live().peek_by_id(prefix, id, raw=raw)

    async def update(self, prefix: str | bytes, id: int, value: Any) -> Item:
        """Replace the value of a ready item of ``prefix``; the updated item. Raises as the
        blocking ``update`` does."""
        return self._live().update(prefix, id, value)

    async def length(self, prefix: str | bytes) -> int:
        """How many items of ``prefix`` are ready."""
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


