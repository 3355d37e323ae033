"""``@tasks.task(...)``: a function registered by name, with its options.

The decorated object still calls the function directly (``send_email(...)`` runs it
here and now); ``delay``/``apply``/``map`` enqueue it instead.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Optional

from .enqueue import Enqueuer
from .job import Job
from .options import DEFAULT_RESULT_TTL, TaskOptions
from .periodic import Periodic

__all__ = ["DEFAULT_RESULT_TTL", "TaskFunction", "TaskOptions"]


class TaskFunction:
    """A registered task. Call it to run it here; ``delay``/``apply`` to enqueue it
    through ``enqueuer`` (the TaskQueue's)."""

    def __init__(self, enqueuer: Enqueuer, fn: Callable[..., Any], name: str,
                 options: TaskOptions, periodic: Optional[Periodic] = None) -> None:
        self.enqueuer = enqueuer
        self.fn = fn
        self.name = name
        self.options = options
        self.periodic = periodic
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here and now (raises what it raises)."""
        return self.fn(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> Job:
        """Enqueue a call with these arguments; return its Job at once. Raises TypeError
        for arguments msgpack cannot hold (nothing is written)."""
        return self.enqueuer.one(self.name, self.options, args, kwargs)

    def apply(self, args: Any = (), kwargs: Optional[dict[str, Any]] = None, *,
              delay: Any = None, eta: Optional[dt.datetime] = None,
              priority: Optional[int] = None, unique_key: Optional[str] = None,
              queue: Optional[str] = None) -> Job:
        """Enqueue with options: ``delay`` seconds (or timedelta) or ``eta`` (datetime),
        ``priority`` (higher runs first), ``unique_key``, another ``queue``. Raises
        TypeError or ValueError for a bad argument or option (nothing is written)."""
        return self.enqueuer.one(self.name, self.options, args, kwargs or {}, queue=queue,
                                 priority=priority, delay=delay, eta=eta,
                                 unique_key=unique_key)

    async def adelay(self, *args: Any, **kwargs: Any) -> Job:
        """``delay`` for asyncio. The enqueue is one short write (see docs/asyncio.md),
        made on the loop; the first use of the TaskQueue also opens its directory."""
        return self.delay(*args, **kwargs)

    async def aapply(self, args: Any = (), kwargs: Optional[dict[str, Any]] = None,
                     **options: Any) -> Job:
        """``apply`` for asyncio, with the same options (made on the loop, as ``adelay``)."""
        return self.apply(args, kwargs, **options)

    def map(self, calls: Iterable[Any], **options: Any) -> list[Job]:
        """Enqueue many calls in one batch, as ``tasks.enqueue_many`` does: each item is a
        tuple of positional arguments, an ``(args, kwargs)`` pair, or one argument. Takes
        ``apply``'s options except unique_key. Raises as ``apply`` does (nothing is
        written then)."""
        return self.enqueuer.many(self.name, self.options, calls, **options)

    def __repr__(self) -> str:
        """``<task name queue='...'>``."""
        return f"<task {self.name} queue={self.options.queue!r}>"
