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
from collections.abc import Collection
from typing import TYPE_CHECKING

from ..errors import DiskQueueError
from .lanes import Space

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("diskqueue.engine")

COMPACT_EVERY = 50_000  # deletes between compactions of the consumed key ranges
CLOSE_AFTER = 1_000  # deletes since the last compaction that make close() compact


class Compaction:
    """Mixin of :class:`diskqueue.engine.Engine`."""

    path: str
    _lock: threading.Lock
    _idle: threading.Condition
    _outside: int
    _deleted: int
    _store: Store
    _spaces: dict[bytes, Space]
    _compactor: threading.Thread | None

    def _count_deletes(self, sp: Space, lanes: Collection[bytes], n: int,
                       from_tail: bool = False) -> None:
        sp.dirty.update(lanes)
        if from_tail:
            sp.dirty_top.update(lanes)
        self._deleted += n
        if self._deleted >= COMPACT_EVERY:
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        """Compact the consumed ranges in the background (called with the lock held)."""
        if self._compactor is not None and self._compactor.is_alive():
            return
        ranges = self._dirty_ranges()
        self._outside += 1
        self._compactor = threading.Thread(
            # Not a daemon: the interpreter must wait for it before the store closes.
            target=self._compact, args=(ranges,), name="diskqueue-compact"
        )
        self._compactor.start()

    def _compact_before_close(self) -> None:
        """Called by close (lock held, nothing outside it): compact what was consumed
        since the last compaction, so a closed directory holds little besides live data."""
        if self._deleted < CLOSE_AFTER:
            return
        try:
            for start, stop in self._dirty_ranges():
                self._store.compact(start, stop)
        except DiskQueueError:
            log.exception("compaction of %s on close failed", self.path)

    def _dirty_ranges(self) -> list[tuple[bytes, bytes]]:
        """The consumed key ranges of the lanes with deletes; they count as clean after."""
        ranges = []
        for sp in self._spaces.values():
            for lane_key in sp.dirty:
                ln = sp.lanes[lane_key]
                reserved = (s for (k, s) in sp.reserved if k == lane_key)
                ranges += [(sp.item_key(lane_key, lo), sp.item_key(lane_key, hi))
                           for lo, hi in ln.consumed_runs(reserved)]
                if lane_key in sp.dirty_top:
                    ranges.append((sp.item_key(lane_key, ln.tail),
                                   sp.item_key(lane_key, 2**64 - 1)))
            sp.dirty.clear()
            sp.dirty_top.clear()
        self._deleted = 0
        return ranges

    def _compact(self, ranges: list[tuple[bytes, bytes]]) -> None:
        try:
            for start, stop in ranges:
                self._store.compact(start, stop)
        except DiskQueueError:
            log.exception("compaction of %s failed; it will be tried again", self.path)
        finally:
            with self._lock:
                self._outside -= 1
                self._idle.notify_all()
