"""Disk follows live data: the consumed key ranges are compacted in the background.

LevelDB leaves a tombstone per deleted key, behind an ever-advancing head. Compacting
per delete would be ruinous, so deletes are counted and, every ``COMPACT_EVERY`` of
them, the ranges below each dirty lane's lowest live item (and above its tail, where a
Stack pops) are compacted by one background thread, outside the engine's lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .errors import DiskQueueError
from .lanes import Space

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("diskqueue.engine")

COMPACT_EVERY = 50_000  # deletes between compactions of the consumed key ranges


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

    def _count_deletes(self, sp: Space, lanes: Iterable[bytes], n: int) -> None:
        sp.dirty.update(lanes)
        self._deleted += n
        if self._deleted >= COMPACT_EVERY:
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        """Compact the consumed ranges in the background (called with the lock held)."""
        if self._compactor is not None and self._compactor.is_alive():
            return
        ranges = []
        for sp in self._spaces.values():
            for lane_key in sp.dirty:
                ln = sp.lanes[lane_key]
                reserved = (s for (k, s) in sp.reserved if k == lane_key)
                low = ln.lowest_live(reserved)
                ranges.append((sp.item_key(lane_key, 0), sp.item_key(lane_key, low)))
                ranges.append((sp.item_key(lane_key, ln.tail), sp.item_key(lane_key, 2**64 - 1)))
            sp.dirty.clear()
        self._deleted = 0
        self._outside += 1
        self._compactor = threading.Thread(
            # Not a daemon: the interpreter must wait for it before the store closes.
            target=self._compact, args=(ranges,), name="diskqueue-compact"
        )
        self._compactor.start()

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
