"""asyncio: awaitable queues on the same directories as the blocking ones.

``AsyncQueue``, ``AsyncStack``, ``AsyncPriorityQueue`` and ``AsyncPrefixQueue`` take the
constructor arguments of :class:`diskqueue.Queue` and friends and offer their methods as
coroutines, plus ``async with``, ``async for`` and the face of :class:`asyncio.Queue`.
A task cancelled while it waits for an item never loses it nor leaves it reserved. See
docs/asyncio.md.
"""

from ..errors import AsyncEmpty, AsyncFull
from .fifo import AsyncQueue, AsyncStack
from .prefix import AsyncPrefixQueue
from .priority import AsyncPriorityQueue

__all__ = ["AsyncEmpty", "AsyncFull", "AsyncPrefixQueue", "AsyncPriorityQueue", "AsyncQueue",
           "AsyncStack"]
