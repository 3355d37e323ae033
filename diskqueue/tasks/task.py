"""``@tasks.task(...)``: a function registered by name, with its options.

The decorated object still calls the function directly (``send_email(...)`` runs it
here and now); ``delay``/``apply``/``map`` enqueue it instead.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .._checks import check_duration
from . import layout as records
from .periodic import Periodic
from .ratelimit import parse_rate

if TYPE_CHECKING:
    from .job import Job
    from .taskqueue import TaskQueue

DEFAULT_RESULT_TTL = 86400.0


@dataclass(frozen=True)
class TaskOptions:
    """How a task runs; checked when it is registered."""

    retries: int = 0
    backoff: float = 1.0
    max_backoff: float = 3600.0
    timeout: Optional[float] = None
    queue: str = "default"
    priority: int = 0
    rate_limit: Optional[str] = None
    result_ttl: Optional[float] = DEFAULT_RESULT_TTL

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise TypeError(f"retries must be an int, not {type(self.retries).__name__}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, not {self.retries}")
        # Stored as checked: seconds as floats, and infinity (no limit, kept for ever)
        # as None, which is what the rest of the code reads as "no limit".
        fix = functools.partial(object.__setattr__, self)  # the dataclass is frozen
        fix("backoff", check_duration("backoff", self.backoff, allow_none=False,
                                      timedelta=True))
        fix("max_backoff", check_duration("max_backoff", self.max_backoff, allow_none=False,
                                          timedelta=True))
        fix("timeout", check_duration("timeout", self.timeout, allow_inf=True, positive=True,
                                      timedelta=True))
        records.check_queue(self.queue)
        records.check_priority(self.priority)
        if self.rate_limit is not None:
            parse_rate(self.rate_limit)
        fix("result_ttl", check_duration("result_ttl", self.result_ttl, allow_inf=True,
                                         timedelta=True))


class TaskFunction:
    """A registered task. Call it to run it here; ``delay``/``apply`` to enqueue it."""

    def __init__(self, tasks: TaskQueue, fn: Callable[..., Any], name: str,
                 options: TaskOptions, periodic: Optional[Periodic] = None) -> None:
        self.tasks = tasks
        self.fn = fn
        self.name = name
        self.options = options
        self.periodic = periodic
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> Job:
        """Enqueue a call with these arguments; return its Job at once."""
        return self.tasks._enqueue(self, args, kwargs)

    def apply(self, args: Any = (), kwargs: Optional[dict[str, Any]] = None, *,
              delay: Any = None, eta: Optional[dt.datetime] = None,
              priority: Optional[int] = None, unique_key: Optional[str] = None,
              queue: Optional[str] = None) -> Job:
        """Enqueue with options: ``delay`` seconds (or timedelta) or ``eta`` (datetime),
        ``priority`` (higher runs first), ``unique_key``, another ``queue``."""
        return self.tasks._enqueue(self, args, kwargs or {}, queue=queue, priority=priority,
                                   delay=delay, eta=eta, unique_key=unique_key)

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
        ``apply``'s options except unique_key."""
        return self.tasks.enqueue_many(self.name, calls, **options)

    def __repr__(self) -> str:
        return f"<task {self.name} queue={self.options.queue!r}>"
