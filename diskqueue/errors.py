"""The error tree: every error diskqueue raises derives from :class:`DiskQueueError`.

Errors that have a natural stdlib meaning also derive from the stdlib class, so code
written for :mod:`queue` keeps catching what it expects.
"""

from __future__ import annotations

import queue


class DiskQueueError(Exception):
    """Raised for any failure of diskqueue; the base of every other error here."""


class Empty(DiskQueueError, queue.Empty):
    """Raised when an item is asked of an empty structure (or a blocking call timed out)."""


class Full(DiskQueueError, queue.Full):
    """Raised when ``put`` finds the queue at ``maxsize`` and may not (or no longer) wait."""


class OutOfBounds(DiskQueueError, IndexError):
    """Raised when an offset or id names no item of a non-empty structure."""


class Closed(DiskQueueError):
    """Raised when a handle is used after ``close()`` or ``drop()``."""


class IncompatibleType(DiskQueueError):
    """Raised when a directory holds a different structure than the class opening it."""


class Locked(DiskQueueError):
    """Raised when another process holds the directory and cannot be reached."""

    def __init__(self, path: str, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"{path} is held by {who}; close it there, or wait for it to exit"
        )
        self.path = path
        self.pid = pid


class Corrupted(DiskQueueError):
    """Raised when LevelDB reports corruption; ``diskq repair PATH`` restores access."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"{path} is corrupted ({detail}); run `diskq repair {path}` to restore access"
        )
        self.path = path


class NotReserved(DiskQueueError, ValueError):
    """Raised when ``ack``/``nack`` names an item that is not reserved any more.

    That happens after it was already acked or nacked, or when its lease expired and it
    went back to the queue (and perhaps to another consumer).
    """


class JobFailed(DiskQueueError):
    """Raised by ``Job.result()`` when the job ended dead; carries the task's error."""

    def __init__(
        self, message: str, *, error_type: str = "", error: str = "", traceback: str = ""
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.error = error
        self.traceback = traceback


class JobTimeout(JobFailed):
    """Raised when a job ran past its ``timeout``, or ``result(timeout=)`` ran out waiting."""


class PermissionDenied(DiskQueueError, PermissionError):
    """Raised when this user may not read or write a queue's directory or its files.

    The message names the path and what to check; it is not damage, so ``diskq repair``
    does not help. Even a call that only reads needs write access: LevelDB takes its LOCK
    file and starts a new log when it opens a directory.
    """


class SharedDirectoryWarning(UserWarning):
    """Raised (as a warning, once per directory) when a queue's existing directory lets
    its group or other users read or write it beyond the ``mode=`` it was opened with."""
