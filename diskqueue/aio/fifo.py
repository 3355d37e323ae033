"""``AsyncQueue`` and ``AsyncStack``: :class:`diskqueue.Queue` and
:class:`diskqueue.Stack` for asyncio, and stand-ins for ``asyncio.Queue`` and
``asyncio.LifoQueue``.

In the process that holds the directory a woken task takes for itself (see
:mod:`.waiting`). In a client process the dispatcher's thread takes for it: a Queue's
waiting dequeue is handed a reservation, which the task acks once it has resumed with
it, and which is nacked to the front when no task accepts it (its ``attempts`` count
keeps that reservation). A Stack has no reservations: there the dispatcher pops the top,
and pushes it again, on top where it was, when no task accepts it (with the same id
unless another push came between).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Optional

from .._checks import check_timeout
from ..errors import Empty
from ..item import Item
from ..structures.fifo import Queue, Stack
from .common import Draining, HeadTakes, same
from .face import AsyncQueueFace
from .handle import AsyncHandle, nothing, now, unbounded


class _Line(AsyncHandle[Any], Draining, AsyncQueueFace):
    """What AsyncQueue and AsyncStack share: reads by place or id, and the face."""

    _q: Queue | Stack

    @abc.abstractmethod
    async def _take_one(self, block: bool, timeout: Optional[float]) -> Item:
        """Dequeue (Queue) or pop (Stack) one item."""

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

    def get(self) -> Coroutine[Any, Any, Any]:
        """Remove and return the next value, waiting for one (a coroutine, as
        ``asyncio.Queue.get``). Cancelled, it took nothing, or its item is back at the
        front."""
        # A plain function that returns the dispatcher's coroutine, which also makes the
        # take that does not wait: a waiting task then holds that one frame only, which
        # 10,000 waiting tasks feel.
        key, take_now, take, give_back, accept = self._get_plan
        self._live()
        return self._dispatcher(key, take, give_back).wait(None, take_now, accept)

    @property
    @abc.abstractmethod
    def _get_plan(self) -> tuple[Any, Callable[[], Any], Callable[[float], Item],
                                 Callable[[Item], None], Callable[[Item], Any]]:
        """How ``get`` takes: the dispatcher's key, the take that does not wait, the
        dispatcher's take, its give-back, and the acceptance (made once: a waiting task
        holds on to them, and 10,000 copies would add up)."""


class AsyncQueue(_Line, HeadTakes):
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

    async def _take_one(self, block: bool, timeout: Optional[float]) -> Item:
        return await self.dequeue(block=block, timeout=timeout)

    @functools.cached_property
    def _get_plan(self) -> tuple[Any, Callable[[], Any], Callable[[float], Item],
                                 Callable[[Item], None], Callable[[Item], Any]]:
        q = self._q
        return (("dequeue", False), lambda: q.dequeue().value, self._handing_over(False),
                self._nacked, lambda item: self._acked(item).value)


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
        unbounded(self._q, lambda q: q.push(item.value))

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
        first = True
        if not block or self._idle("pop"):
            try:
                return self._live().pop(raw=raw)
            except Empty as exc:
                if not block:
                    raise nothing(exc) from None
            first = False
        q = self._q
        return await self._waiting("pop", timeout, first, q.pop,
                                   lambda s: q.pop(block=True, timeout=s),
                                   self._pushed_back, same)

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

    @functools.cached_property
    def _get_plan(self) -> tuple[Any, Callable[[], Any], Callable[[float], Item],
                                 Callable[[Item], None], Callable[[Item], Any]]:
        q = self._q
        return ("pop", lambda: q.pop().value, lambda s: q.pop(block=True, timeout=s),
                self._pushed_back, lambda item: item.value)


