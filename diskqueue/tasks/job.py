"""``Job``: a handle on one enqueued call, and the states it goes through.

``pending`` (in a queue, waiting) -> ``started`` (a worker runs it) -> ``success``, or
``retrying`` (it failed and will run again after a backoff) -> ... -> ``dead`` (the
last attempt failed; it sits in the dead-letter set). A job enqueued with ``delay=`` or
``eta=`` is ``scheduled`` until its time comes, then ``pending``.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Generic, Optional, TypeVar

from .._checks import check_duration
from ..errors import DiskQueueError, JobFailed, JobTimeout
from .jobstore import HasStore
from .layout import DEAD, FINISHED, PENDING, RETRYING, SCHEDULED, STARTED, STATES, SUCCESS

__all__ = ["DEAD", "FINISHED", "PENDING", "RETRYING", "SCHEDULED", "STARTED", "STATES",
           "SUCCESS", "Job", "UnknownJob", "failure"]


class UnknownJob(DiskQueueError, KeyError):
    """Raised when a job id names no job: never enqueued here, purged, or expired."""

    def __str__(self) -> str:  # KeyError would quote the message
        """The message, unquoted."""
        return str(self.args[0]) if self.args else ""


def _when(stamp: Optional[float]) -> Optional[dt.datetime]:
    if stamp is None:
        return None
    try:
        return dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
    except (OverflowError, ValueError, OSError):  # a backoff beyond the calendar: "never"
        return dt.datetime.max.replace(tzinfo=dt.timezone.utc)


def failure(record: dict[str, Any]) -> JobFailed:
    """The exception ``result()`` raises for a dead job."""
    err = record.get("error") or {}
    kind = err.get("type", "")
    message = f"job {record['id']} ({record['task']}) failed: {kind}: {err.get('message', '')}"
    cls = JobTimeout if kind == "JobTimeout" else JobFailed
    return cls(message, error_type=kind, error=err.get("message", ""),
               traceback=err.get("traceback", ""))


R = TypeVar("R")


class Job(Generic[R]):
    """One enqueued call (``Job[R]``: of a task returning ``R``). ``id`` is fixed;
    every other attribute is read from disk when asked, so it shows the job as it is now
    (``task``, ``args``, ``kwargs``, ``queue``, ``priority`` never change and are read
    once).

    ``tasks`` is the TaskQueue (or anything with its ``store``) the job lives in.
    """

    __slots__ = ("id", "_store", "_snap")

    def __init__(self, tasks: HasStore, id: str, snapshot: Optional[dict[str, Any]] = None):
        self.id = id
        self._store = tasks.store
        self._snap = snapshot

    def _unknown(self) -> UnknownJob:
        return UnknownJob(f"no job {self.id} in {self._store.path} "
                          "(never enqueued here, purged, or its result expired)")

    # -- reading ---------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The whole job record as stored now (a fresh dict); raises ``UnknownJob``
        when there is none."""
        record = self._store.read(self.id)
        if record is None:
            raise self._unknown()
        self._snap = record
        return record

    def snapshot(self) -> dict[str, Any]:
        """The record as this handle last read or wrote it, without a disk read (a copy;
        in a middleware hook, the job as the hook sees it). :meth:`info` reads it anew."""
        return dict(self._snap) if self._snap is not None else self.info()

    def _fixed(self, field: str) -> Any:
        snap = self._snap if self._snap is not None else self.info()
        return snap.get(field)

    task = property(lambda self: self._fixed("task"), doc="the task name")
    @property
    def args(self) -> list[Any]:
        """The positional arguments (DiskQueueError: stored with another codec)."""
        self._fixed("id")  # reads the record once
        return list(self._store.payload.args_of(self._snap or {})[0])

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments (DiskQueueError: stored with another codec)."""
        self._fixed("id")
        return dict(self._store.payload.args_of(self._snap or {})[1])

    queue = property(lambda self: self._fixed("queue"), doc="the queue it was put in")
    priority = property(lambda self: self._fixed("priority"), doc="higher runs first")
    unique_key = property(lambda self: self._fixed("unique"), doc="its unique_key or None")

    @property
    def state(self) -> str:
        """One of ``pending scheduled started retrying success dead``."""
        return str(self.info()["state"])

    @property
    def attempts(self) -> int:
        """How many times a worker started it (a run cut short by a crash counts)."""
        return int(self.info().get("attempts", 0))

    @property
    def failures(self) -> int:
        """How many of those runs failed (raised, timed out, or asked for a Retry)."""
        return int(self.info().get("failures", 0))

    @property
    def progress(self) -> Any:
        """The last value the running task reported with ``set_progress``, or None."""
        return self.info().get("progress")

    @property
    def error(self) -> Optional[dict[str, str]]:
        """The last failure: ``{"type", "message", "traceback"}``, or None."""
        return self.info().get("error")

    enqueued_at = property(lambda self: _when(self.info().get("enqueued")),
                           doc="when it was enqueued (aware UTC datetime)")
    started_at = property(lambda self: _when(self.info().get("started")),
                          doc="when its latest run started, or None")
    finished_at = property(lambda self: _when(self.info().get("finished")),
                           doc="when it finished (success or dead), or None")
    eta = property(lambda self: _when(self.info().get("eta")),
                   doc="when a scheduled or retrying job is due, or None")

    # -- waiting ---------------------------------------------------------------
    def result(self, timeout: Optional[float] = None) -> R:
        """Wait until the job finished; return its value or raise what it failed with.

        Raises ``JobFailed`` (type name, message, traceback of the task's error) for a
        dead job, ``JobTimeout`` when it ran past its ``timeout`` or when ``timeout``
        seconds pass here first (``None`` or ``math.inf``: wait for ever; ``0``: do not
        wait; NaN or a negative number: ``ValueError``), ``DiskQueueError`` for a result
        stored with another codec than this TaskQueue's.
        """
        seconds = check_duration("timeout", timeout, allow_inf=True)
        end = None if seconds is None else time.monotonic() + seconds
        record = self._store.wait_finished(self.id, end)
        if record is None:
            raise self._unknown()
        if record["state"] == SUCCESS:
            value: Any = self._store.payload.result_of(record)
            return value  # type: ignore[no-any-return]
        if record["state"] == DEAD:
            raise failure(record)
        raise JobTimeout(f"job {self.id} is still {record['state']} after {timeout} s",
                         error_type="JobTimeout", error="result() timed out")

    async def aresult(self, timeout: Optional[float] = None) -> Any:
        """``result(timeout)`` for asyncio: waits without blocking the event loop (and
        without a thread per job); raises as ``result`` does."""
        from .aio import result  # asyncio's side of the task layer, kept apart

        return await result(self, self._store.path, timeout)

    # -- identity --------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        """Jobs are equal when their ids are."""
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        """The hash of the id."""
        return hash(self.id)

    def __repr__(self) -> str:
        """``<Job id task>`` (reads the record once, when no snapshot is held)."""
        return f"<Job {self.id} {self._fixed('task')}>"
