"""The error tree: every error diskqueue raises derives from :class:`DiskQueueError`.

Errors that have a natural stdlib meaning also derive from the stdlib class, so code
written for :mod:`queue` keeps catching what it expects.
"""

from __future__ import annotations

import asyncio
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
    """Raised when another process holds the directory and cannot be reached.

    A plain ``Locked`` from a call means the call did not and will not take effect:
    nothing reached the holder, or the holder refused it as past its deadline.
    """

    def __init__(self, path: str, pid: int | None, reason: str = "") -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"{path} is held by {who}{reason}; close it there, or wait for it to exit"
        )
        self.path = path
        self.pid = pid
        self._reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        # so that it crosses process boundaries (a process pool) intact
        return (type(self), (self.path, self.pid, self._reason))


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


class Undecodable(DiskQueueError):
    """Raised when a stored item's bytes cannot be decoded with the handle's codec.

    Nothing was taken: the item is still in place. ``id``, ``key``, ``priority`` and
    ``prefix`` say which item it is (``None`` when it could not be told, for instance
    because another consumer took it meanwhile), ``data`` holds its raw bytes and the
    codec's own error is the ``__cause__``. To remove or inspect it on purpose, take it
    undecoded with ``raw=True`` (``dequeue``, ``dequeue_many``, ``pop``, ``reserve`` and
    ``peek`` accept it), or open the directory with the codec that wrote it.
    """

    def __init__(self, message: str = "", *, path: str = "", data: bytes = b"",
                 reason: str = "", index: int = 0, id: int | None = None,
                 key: bytes | None = None, priority: int | None = None,
                 prefix: bytes | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.data = data
        self.reason = reason
        self.index = index  # its place among the items of the call (0: the first)
        self.id = id
        self.key = key
        self.priority = priority
        self.prefix = prefix
        if not message:
            self.args = (self._describe(),)

    def locate(self, id: int, key: bytes, priority: int | None = None,
               prefix: bytes | None = None) -> None:
        """Name the item (known only once the handle has found it again)."""
        self.id, self.key, self.priority, self.prefix = id, key, priority, prefix
        self.args = (self._describe(),)

    def _describe(self) -> str:
        what = "an item" if self.id is None else f"item {self.id}"
        if self.priority is not None:
            what += f" at priority {self.priority}"
        if self.prefix is not None:
            what += f" of prefix {self.prefix!r}"
        return (
            f"{self.path}: {what} ({len(self.data)} bytes) cannot be decoded: {self.reason}. "
            "It was left in place; open the directory with the codec that wrote it, or take "
            "it undecoded with raw=True (dequeue(raw=True), pop(raw=True), reserve(raw=True)) "
            "to remove or inspect it"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild_undecodable, (str(self), self.__dict__)


def _rebuild_undecodable(message: str, fields: dict[str, object]) -> Undecodable:
    exc = Undecodable(message)
    exc.__dict__.update(fields)
    return exc


class OutcomeUnknown(Locked):
    """Raised when a call reached the holder, which then did not answer in time.

    The holder is alive but stopped or hung. The call may have taken effect, or may
    still do so once the holder runs again, but only if it started before its deadline
    (the holder refuses a request it reaches later). An item a take would have
    returned is not lost: the holder keeps it until this client confirms it, and puts
    it back when this client's connection closes.
    """

    def __init__(self, path: str, pid: int | None, waited: float) -> None:
        super().__init__(
            path, pid,
            f", which did not answer within {waited:g} s: the call was sent and may "
            "have taken effect",
        )
        self.waited = waited

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.pid, self.waited))


class AsyncEmpty(Empty, asyncio.QueueEmpty):
    """Raised by the async structures (:mod:`diskqueue.aio`) where ``Empty`` would be:
    also an ``asyncio.QueueEmpty``, as ``get_nowait`` of an ``asyncio.Queue`` raises."""


class AsyncFull(Full, asyncio.QueueFull):
    """Raised by the async structures where ``Full`` would be: also an
    ``asyncio.QueueFull``, as ``put_nowait`` of a bounded ``asyncio.Queue`` raises."""
