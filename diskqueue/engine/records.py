"""Records: small keyed values beside the queues, in namespaces of their own.

The task layer keeps its job records, schedules and results here, and writes them in
the same batch as the queue mutation they belong to (``Engine.push``/``ack`` take
``records=``), so an outcome and the delete of its job land together or not at all.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Optional

from . import keys
from .leases import RecordOps

if TYPE_CHECKING:
    from .store import Store


class Records:
    """Mixin of :class:`diskqueue.engine.Engine`."""

    _lock: threading.Lock
    _store: Store

    if TYPE_CHECKING:  # provided by Engine
        def _check(self) -> None: ...

    @staticmethod
    def _plan_records(records: RecordOps, puts: list[tuple[bytes, bytes]]) -> list[bytes]:
        """Add record puts to ``puts``; return the record keys to delete."""
        deletes = []
        for ns, key, value in records:
            full = keys.RECORD + keys.ns_bytes(ns) + key
            if value is None:
                deletes.append(full)
            else:
                puts.append((full, value))
        return deletes

    def write_records(self, records: RecordOps) -> None:
        """Put (or, with value None, delete) ``(ns, key, value)`` records atomically."""
        with self._lock:
            self._check()
            puts: list[tuple[bytes, bytes]] = []
            deletes = self._plan_records(records, puts)
            self._store.write(puts, deletes)

    def get_record(self, ns: bytes, key: bytes) -> Optional[bytes]:
        with self._lock:
            self._check()
            return self._store.get(keys.RECORD + keys.ns_bytes(ns) + key)

    def scan_records(self, ns: bytes, start: bytes = b"", stop: Optional[bytes] = None,
                     limit: int = 1000) -> list[tuple[bytes, bytes]]:
        """Records of a namespace with ``start <= key < stop``, in key order."""
        base = keys.RECORD + keys.ns_bytes(ns)
        upper = base + stop if stop is not None else keys.prefix_end(base)
        with self._lock:
            self._check()
            found = self._store.scan(start=base + start, stop=upper, limit=limit)
        return [(k[len(base):], v) for k, v in found]
