"""Disk follows live data: the consumed key ranges are compacted in the background.

LevelDB leaves a tombstone per deleted key, behind an ever-advancing head. Compacting
per delete would be ruinous, so deletes are counted and, every ``COMPACT_EVERY`` of
them, the consumed ranges below each dirty lane's head (the gaps between the items still
live there: reserved, or put back at the front) and above its tail, where a Stack
popped, are compacted by one background thread, outside the engine's lock.

Closing compacts what was consumed since the last round, so a closed directory holds
little besides its live items.

The range above a tail is compacted only after pops there: it is where new items land,
so compacting it chases the writes, and under a steady stream of them one such
compaction took seconds while tombstones piled up behind the head.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..errors import DiskQueueError
from . import logs
from .store import Store

log = logging.getLogger("diskqueue.engine")

COMPACT_EVERY = 50_000  # deletes between compactions of the consumed key ranges
CLOSE_AFTER = 1_000  # deletes since the last compaction that make close() compact

Ranges = list[tuple[bytes, bytes]]


class Compactor:
    """Compacts the consumed key ranges of one store on a thread of its own.

    The engine counts its deletes in :attr:`deleted` and calls :meth:`start` with its
    lock held; ``ranges()`` (called there, under that lock) hands over the consumed
    ranges. The thread calls ``begin()`` before it uses the store (False: the store is
    closing, and the thread leaves it alone) and, when it did use it, ``finished()``
    when it is done.
    """

    __slots__ = ("deleted", "_store", "_path", "_ranges", "_begin", "_finished", "_thread")

    def __init__(self, store: Store, path: str, ranges: Callable[[], Ranges],
                 begin: Callable[[], bool], finished: Callable[[], None]) -> None:
        self.deleted = 0  # deletes since the last compaction
        self._store = store
        self._path = path
        self._ranges = ranges
        self._begin = begin
        self._finished = finished
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start compacting in the background, unless a round still runs."""
        if self._thread is not None and self._thread.is_alive():
            return
        ranges = self._take_ranges()
        # Not a daemon: the interpreter must wait for it before the store closes.
        self._thread = threading.Thread(target=self._run, args=(ranges,),
                                        name="diskqueue-compact")
        self._thread.start()

    def before_close(self) -> None:
        """Compact, in this thread, what was consumed since the last round, so a closed
        directory holds little besides live data (nothing may use the store meanwhile).
        A failure is logged, not raised: closing goes on."""
        if self.deleted < CLOSE_AFTER:
            return
        try:
            self._compact(self._take_ranges())
        except DiskQueueError:
            logs.later(log, logging.ERROR, "compaction of %s on close failed", self._path,
                       exc_info=True)

    def _take_ranges(self) -> Ranges:
        ranges = self._ranges()
        self.deleted = 0
        return ranges

    def _compact(self, ranges: Ranges) -> None:
        for start, stop in ranges:
            self._store.compact(start, stop)

    def _run(self, ranges: Ranges) -> None:
        if not self._begin():
            return  # closing: its ranges are left to LevelDB's own compactions
        try:
            self._compact(ranges)
        except DiskQueueError:
            log.exception("compaction of %s failed; it will be tried again", self._path)
        finally:
            self._finished()
