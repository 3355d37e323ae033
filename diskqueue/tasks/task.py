"""``@tasks.task(...)``: a function registered by name, with its options.

The decorated object still calls the function directly (``send_email(...)`` runs it
here and now); ``delay``/``apply``/``map`` enqueue it instead.

Typed: a ``TaskFunction[P, R]`` keeps the function's parameters ``P`` and return type
``R``, so a type checker checks the arguments of a call and of ``delay``, and its jobs
are ``Job[R]``. An ``async def`` task is an :class:`AsyncTaskFunction`: calling it
returns the coroutine, while its jobs hold what the coroutine returns. ``apply`` and
``map`` take their arguments as a tuple and a dict, which a ParamSpec cannot describe:
those stay unchecked.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Generic, Optional, ParamSpec, Protocol, TypeVar, overload

from .enqueue import Enqueuer
from .job import Job
from .options import DEFAULT_RESULT_TTL, TaskOptions
from .periodic import Periodic

__all__ = ["DEFAULT_RESULT_TTL", "AsyncTaskFunction", "TaskDecorator", "TaskFunction",
           "TaskOptions", "make_task"]

P = ParamSpec("P")
R = TypeVar("R")


class TaskFunction(Generic[P, R]):
    """A registered task. Call it to run it here; ``delay``/``apply`` to enqueue it
    through ``enqueuer`` (the TaskQueue's)."""

    def __init__(self, enqueuer: Enqueuer, fn: Callable[P, Any], name: str,
                 options: TaskOptions, periodic: Optional[Periodic] = None) -> None:
        self.enqueuer = enqueuer
        self.fn = fn
        self.name = name
        self.options = options
        self.periodic = periodic
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now (raises what it raises)."""
        return self.fn(*args, **kwargs)  # type: ignore[no-any-return]

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue a call with these arguments; return its Job at once. Raises TypeError
        naming the argument the codec cannot store (nothing is written)."""
        return self.enqueuer.call(self.name, self.options, args, kwargs)

    def apply(self, args: Any = (), kwargs: Optional[dict[str, Any]] = None, *,
              delay: Any = None, eta: Optional[dt.datetime] = None,
              priority: Optional[int] = None, unique_key: Optional[str] = None,
              queue: Optional[str] = None) -> Job[R]:
        """Enqueue with options: ``delay`` seconds (or timedelta) or ``eta`` (datetime),
        ``priority`` (higher runs first), ``unique_key``, another ``queue``. Raises
        TypeError or ValueError for a bad argument or option (nothing is written)."""
        return self.enqueuer.one(self.name, self.options, args, kwargs or {}, queue=queue,
                                 priority=priority, delay=delay, eta=eta,
                                 unique_key=unique_key)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """``delay`` for asyncio. The enqueue is one short write (see docs/asyncio.md),
        made on the loop; the first use of the TaskQueue also opens its directory."""
        return self.delay(*args, **kwargs)

    async def aapply(self, args: Any = (), kwargs: Optional[dict[str, Any]] = None,
                     **options: Any) -> Job[R]:
        """``apply`` for asyncio, with the same options (made on the loop, as ``adelay``)."""
        return self.apply(args, kwargs, **options)

    def map(self, calls: Iterable[Any], **options: Any) -> list[Job[R]]:
        """Enqueue many calls in one batch, as ``tasks.enqueue_many`` does: each item is a
        tuple of positional arguments, an ``(args, kwargs)`` pair, or one argument. Takes
        ``apply``'s options except unique_key. Raises as ``apply`` does (nothing is
        written then)."""
        return self.enqueuer.many(self.name, self.options, calls, **options)

    def __repr__(self) -> str:
        """``<task name queue='...'>``."""
        return f"<task {self.name} queue={self.options.queue!r}>"


class AsyncTaskFunction(TaskFunction[P, R]):
    """A registered ``async def`` task: calling it returns its coroutine (to await
    here); its jobs are ``Job[R]``, holding what the coroutine returns."""

    # The one override that changes a return type: the call gives the coroutine, the
    # job gives its value, where a plain function's call and job both give ``R``.
    def __call__(  # type: ignore[override]
            self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        """The coroutine of a call with these arguments (run it here by awaiting it)."""
        return self.fn(*args, **kwargs)  # type: ignore[no-any-return]


class TaskDecorator(Protocol):
    """What ``@tasks.task(...)`` with options returns: it registers the function it is
    given, keeping its parameters and return type."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /
                 ) -> AsyncTaskFunction[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...

    def __call__(self, fn: Callable[P, Any], /) -> TaskFunction[P, Any]:
        """Register ``fn`` as a task; raises TypeError or ValueError as ``task()`` does."""


def make_task(enqueuer: Enqueuer, fn: Callable[..., Any], name: str, options: TaskOptions,
              periodic: Optional[Periodic] = None) -> TaskFunction[..., Any]:
    """The TaskFunction of ``fn`` (an :class:`AsyncTaskFunction` for ``async def``)."""
    cls = AsyncTaskFunction if inspect.iscoroutinefunction(fn) else TaskFunction
    return cls(enqueuer, fn, name, options, periodic)
