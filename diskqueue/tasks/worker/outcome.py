"""What one run of a job came to: a value, or a failure with what the error said."""

from __future__ import annotations

import traceback
from typing import Any, Optional

from ...errors import JobTimeout


class TaskError(Exception):
    """Stands for an error raised where the exception object cannot travel (a child
    process of the process pool): it keeps the error's type name and message."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type

    def __str__(self) -> str:
        """The error's message."""
        return str(self.args[0]) if self.args else ""


def describe(exc: BaseException) -> str:
    """What an error says: ``str(exc)``, else ``repr(exc)``, else a placeholder naming
    its type, for an exception whose ``__str__`` and ``__repr__`` both raise (a task's
    error must be stored readable, whatever it is)."""
    for show in (str, repr):
        try:
            text = show(exc)
        except BaseException:  # noqa: B036 - any failure here only means "try another way"
            continue
        if isinstance(text, str) and text:  # an empty message says nothing: try repr
            return text
    return f"<{type(exc).__name__} object: its __str__ and __repr__ raised>"


def format_traceback(exc: BaseException) -> str:
    """The traceback text of ``exc``; never raises (a placeholder when it cannot be
    formatted)."""
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException:  # noqa: B036 - the error is stored even without its traceback
        return f"{type(exc).__name__}: {describe(exc)} (its traceback could not be formatted)"


class Outcome:
    """What one run came to: ``ok`` and its ``value``, or the ``error`` record (type,
    message, traceback) and ``exc``, with ``retry_delay`` (a Retry's) and whether the
    failure may be retried."""

    __slots__ = ("ok", "value", "error", "exc", "retry_delay", "retryable")

    def __init__(self, ok: bool, value: Any = None, error: Optional[dict[str, str]] = None,
                 exc: Optional[BaseException] = None, retry_delay: Optional[float] = None,
                 retryable: bool = True) -> None:
        self.ok = ok
        self.value = value
        self.error = error
        self.exc = exc
        self.retry_delay = retry_delay
        self.retryable = retryable


def success(value: Any) -> Outcome:
    """A run that returned ``value``."""
    return Outcome(True, value)


def failed(exc: BaseException, tb: Optional[str] = None, *, retry_delay: Optional[float] = None,
           retryable: bool = True, error_type: Optional[str] = None) -> Outcome:
    """A run that raised ``exc``; its traceback is formatted unless ``tb`` is given.
    Never raises, whatever ``exc`` is."""
    if tb is None:
        tb = format_traceback(exc)
    if error_type is None:
        error_type = exc.error_type if isinstance(exc, TaskError) else type(exc).__name__
    info = {"type": error_type, "message": describe(exc), "traceback": tb}
    return Outcome(False, error=info, exc=exc, retry_delay=retry_delay, retryable=retryable)


def remote(error_type: str, message: str, tb: str,
           retry_delay: Optional[float] = None) -> Outcome:
    """A failure reported by a child process."""
    exc = TaskError(error_type, message)
    return failed(exc, tb, retry_delay=retry_delay, error_type=error_type)


def timed_out(name: str, seconds: float) -> Outcome:
    """A run of the task ``name`` that took longer than its timeout of ``seconds``."""
    exc = JobTimeout(f"task {name} ran longer than its timeout of {seconds:g} s",
                     error_type="JobTimeout")
    return failed(exc, "", error_type="JobTimeout")


class Escaped(Exception):
    """Carries a task's own ``KeyboardInterrupt``, ``SystemExit`` or ``CancelledError``
    out of the asyncio Task that runs its coroutine: left bare, the first two would be
    re-raised out of the event loop itself (ending the pool), and before Python 3.11 a
    ``CancelledError`` loses its message when it crosses a Task."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


async def contained(awaitable: Any) -> Any:
    """Await a task's coroutine, its ``KeyboardInterrupt``/``SystemExit`` wrapped in
    :class:`Escaped`."""
    try:
        return await awaitable
    except (KeyboardInterrupt, SystemExit) as exc:
        raise Escaped(exc) from None
