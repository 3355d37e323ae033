"""The face of :class:`asyncio.Queue` on the async structures.

``put``/``get``/``join`` are coroutines, ``put_nowait``/``get_nowait``/``qsize``/
``empty``/``full``/``task_done`` are plain methods, as on :class:`asyncio.Queue`; the
errors are :class:`~diskqueue.AsyncEmpty` and :class:`~diskqueue.AsyncFull`, which are
also ``asyncio.QueueEmpty`` and ``asyncio.QueueFull``. ``maxsize`` counts what is on
disk (put by any handle or process) and may be reassigned; ``task_done``/``join``
count the items put since the directory was opened in this process, as the blocking
face does.
"""

from __future__ import annotations

import abc
import asyncio
from typing import Any

from ..errors import AsyncFull, Full
from ..structures.stdlib import QueueFace
from .handle import now
from .waiting import SharedCall

# A put waiting for room under ``maxsize`` looks again after this long, doubling up to
# ROOM_MAX: room is made by takes in any handle or process, and the engine offers no
# way to wait for it that a cancelled task could abandon without storing the value.
ROOM_FIRST = 0.001
ROOM_MAX = 0.05


class AsyncQueueFace(abc.ABC):
    """``asyncio.Queue``'s methods over the structure's own take (``_get_item``)."""

    _joiner: SharedCall | None = None

    @abc.abstractmethod
    def _face(self) -> QueueFace:
        """The blocking handle, open (``Closed`` otherwise)."""

    @abc.abstractmethod
    async def get(self) -> Any:
        """Remove and return the next item, waiting for one. Cancelled, it took nothing
        (or gave its item back at once)."""

    def put_nowait(self, item: Any) -> None:
        """Store ``item`` now; ``AsyncFull`` (an ``asyncio.QueueFull``) at ``maxsize``."""
        try:
            self._face().put(item, block=False)
        except Full as exc:
            raise AsyncFull(str(exc)) from None

    async def put(self, item: Any) -> None:
        """Store ``item``, first waiting for room under ``maxsize`` if there is one.

        Cancelled while waiting, it stored nothing."""
        face = self._face()
        pause = ROOM_FIRST
        while True:
            try:
                face.put(item, block=False)
                return
            except Full:
                await asyncio.sleep(pause)
                pause = min(pause * 2, ROOM_MAX)
                face = self._face()

    def get_nowait(self) -> Any:
        """Remove and return the next item now; ``AsyncEmpty`` (an ``asyncio.QueueEmpty``)
        if there is none."""
        return now(lambda: self._face().get(block=False))

    def qsize(self) -> int:
        """Ready items, in every process."""
        return self._face().qsize()

    def empty(self) -> bool:
        """True when no item is ready (``qsize() == 0``), as ``asyncio.Queue.empty``."""
        return self.qsize() == 0

    def full(self) -> bool:
        """True when ``maxsize`` is set and reached."""
        return self._face().full()

    def task_done(self) -> None:
        """Mark one taken item done (``ValueError`` when called more often than put)."""
        self._face().task_done()

    async def join(self) -> None:
        """Wait until every item put has been marked done. Every task awaiting ``join``
        shares one thread, which ends when the count reaches zero."""
        face = self._face()
        if self._joiner is None:
            self._joiner = SharedCall(face.join, "diskqueue.aio join")
        await self._joiner.wait()
