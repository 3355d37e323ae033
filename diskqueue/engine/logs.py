"""Log records the engine makes while it holds a directory's lock, handed to a thread
of their own that writes them.

Every call of a directory waits for that lock. A logging handler that blocks (stderr
a full pipe nobody reads, a slow network handler, or a handler's lock left taken by an
exception a signal handler raised in the thread that held it) would then stall every
call, and ``close()``, for as long as it blocks. Records are still filtered by the
logger's level at once, in the calling thread; only the writing waits. A record made
just before the process exits may not be written.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from typing import Any

_Record = tuple[logging.Logger, int, str, tuple[Any, ...], Any]

_records: queue.SimpleQueue[_Record] = queue.SimpleQueue()
_started_in = 0  # the process whose writer thread runs
_start_lock = threading.Lock()


def later(logger: logging.Logger, level: int, msg: str, *args: Any,
          exc_info: bool = False) -> None:
    """Log ``msg % args`` at ``level`` through ``logger`` from the writer thread
    (``exc_info``: with the exception being handled now, as ``logger.exception``)."""
    if not logger.isEnabledFor(level):
        return
    _start()
    _records.put((logger, level, msg, args, sys.exc_info() if exc_info else None))


def _start() -> None:
    global _started_in
    if _started_in == os.getpid():
        return
    with _start_lock:
        if _started_in != os.getpid():
            threading.Thread(target=_write, args=(_records,), name="diskqueue-log",
                             daemon=True).start()
            _started_in = os.getpid()


def _write(records: queue.SimpleQueue[_Record]) -> None:
    while True:
        logger, level, msg, args, exc_info = records.get()
        logger.log(level, msg, *args, exc_info=exc_info)


def _after_fork_in_child() -> None:
    """The writer thread is not copied by fork(): a child starts its own."""
    global _records, _started_in, _start_lock
    _records, _started_in, _start_lock = queue.SimpleQueue(), 0, threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
