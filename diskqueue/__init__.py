"""diskqueue: embedded, disk-persistent queues on LevelDB."""

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

__version__ = "0.1.0"

__all__ = [
    "Closed", "Corrupted", "DiskQueueError", "Empty", "Full", "IncompatibleType", "Item",
    "JobFailed", "JobTimeout", "Locked", "NotReserved", "OutOfBounds", "PrefixQueue",
    "PriorityQueue", "Queue", "Stack", "__version__",
    "TaskQueue", "Job", "Retry",
    "PermissionDenied", "SharedDirectoryWarning",
    "Undecodable",
    "OutcomeUnknown",
    "AsyncEmpty", "AsyncFull",
]
