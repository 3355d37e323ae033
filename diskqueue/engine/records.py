"""Records: small keyed values beside the queues, in namespaces of their own.

The task layer keeps its job records, schedules and results here, and writes them in
the same batch as the queue mutation they belong to (``Engine.push``/``ack`` take
``records=``), so an outcome and the delete of its job land together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from . import keys
from .api import RECEIPTS, Receipt
from .core import Core

# (ns, key, value or None to delete): record writes that ride along with a mutation
RecordOps = Iterable[tuple[bytes, bytes, Optional[bytes]]]


_prefixes: dict[bytes, bytes] = {}  # ns -> the start of its record keys (few, reused)


def record_key(ns: bytes, key: bytes) -> bytes:
    """The store key of record ``key`` of namespace ``ns``."""
    prefix = _prefixes.get(ns)
    if prefix is None:
        prefix = keys.RECORD + keys.ns_bytes(ns)
        if len(_prefixes) < 256:  # a caller making up namespaces does not grow it
            _prefixes[ns] = prefix
    return prefix + key


def plan_records(records: RecordOps, puts: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Add the record puts of ``records`` to ``puts``; return the record keys to delete."""
    deletes = []
    put = puts.append
    for ns, key, value in records:
        prefix = _prefixes.get(ns) or record_key(ns, b"")  # (a call per record costs)
        if value is None:
            deletes.append(prefix + key)
        else:
            put((prefix + key, value))
    return deletes


def receipt_put(receipt: Receipt, result: object) -> tuple[bytes, bytes]:
    """The record put of a client's receipt (see :mod:`diskqueue.sharing.receipts`),
    given the result of the call it rides with."""
    key, value = receipt
    return _RECEIPT + key, value(result)


_RECEIPT = record_key(RECEIPTS, b"")  # every receipt's store key starts with this


class Records(Core):
    """The engine's records: write_records, get_record, scan_records. Each raises
    ``Closed`` when the engine is closed; a write that fails changes nothing."""

    def write_records(self, records: RecordOps) -> None:
        """Put (or, with value None, delete) ``(ns, key, value)`` records atomically."""
        with self._lock, self._interrupts:
            self._check()
            puts: list[tuple[bytes, bytes]] = []
            deletes = plan_records(records, puts)
            self._store.write(puts, deletes)

    def get_record(self, ns: bytes, key: bytes) -> Optional[bytes]:
        """The value of record ``key`` of namespace ``ns``, or None."""
        with self._lock, self._interrupts:
            if self.closed or self.forked:
                self._refuse()
            return self._store.get((_prefixes.get(ns) or record_key(ns, b"")) + key)

    def get_records(self, ns: bytes, keys: list[bytes]) -> list[Optional[bytes]]:
        """The values of records ``keys`` of namespace ``ns`` (None where there is
        none), read together: one call for a batch of jobs taken at once."""
        prefix = record_key(ns, b"")
        with self._lock, self._interrupts:
            self._check()
            get = self._store.get
            return [get(prefix + key) for key in keys]

    def scan_records(self, ns: bytes, start: bytes = b"", stop: Optional[bytes] = None,
                     *, limit: int = 1000) -> list[tuple[bytes, bytes]]:
        """Records of a namespace with ``start <= key < stop``, in key order."""
        base = keys.RECORD + keys.ns_bytes(ns)
        upper = base + stop if stop is not None else keys.prefix_end(base)
        with self._lock, self._interrupts:
            self._check()
            found = self._store.scan(start=base + start, stop=upper, limit=limit)
        return [(k[len(base):], v) for k, v in found]
