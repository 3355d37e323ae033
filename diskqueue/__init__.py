"""diskqueue: embedded, disk-persistent queues on LevelDB."""

from ._version import __version__
from .errors import (
    AsyncEmpty,
    AsyncFull,
    Closed,
    Corrupted,
    DiskQueueError,
    Empty,
    Full,
    IncompatibleType,
    JobFailed,
    JobTimeout,
    Locked,
    NotReserved,
    OutcomeUnknown,
    OutOfBounds,
    PermissionDenied,
    SharedDirectoryWarning,
    Undecodable,
)
from .item import Item
from .structures.fifo import Queue, Stack
from .structures.prefix import PrefixQueue
from .structures.priority import PriorityQueue
from .tasks import Job, Retry, TaskQueue

__all__ = [
    # the structures, and what a take hands back
    "Queue", "Stack", "PriorityQueue", "PrefixQueue", "Item",
    # tasks
    "TaskQueue", "Job", "Retry",
    # errors (all are DiskQueueError; Empty and Full are also queue.Empty / queue.Full)
    "DiskQueueError", "Closed", "Corrupted", "Empty", "Full", "IncompatibleType",
    "Locked", "OutcomeUnknown", "NotReserved", "OutOfBounds", "PermissionDenied",
    "Undecodable", "JobFailed", "JobTimeout",
    # what asyncio handles raise: also asyncio.QueueEmpty / asyncio.QueueFull
    "AsyncEmpty", "AsyncFull",
    # warnings
    "SharedDirectoryWarning",
    "__version__",
]
