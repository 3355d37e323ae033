"""Reservations: the in-flight set of an engine (reserve is ``Engine.take`` with a lease).

A reserved item stays at its key; an aside record keeps its attempts, so on disk an
in-flight item and one returned to the front look the same, and a process that dies
holding reservations loses nothing: the next open puts them back at the front.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional

import msgpack

from ..errors import DiskQueueError, NotReserved
from .lanes import Lane, Space

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("diskqueue.engine")

# (ns, key, value or None to delete): record writes that ride along with a mutation
RecordOps = Iterable[tuple[bytes, bytes, Optional[bytes]]]


class Holdings(list):  # type: ignore[type-arg]
    """``(ns, lane, seq, attempts)`` of the reservations of one owner, some since gone."""

    limit = 64  # length at which the gone ones are dropped


class Reservations:
    """Mixin of :class:`diskqueue.engine.Engine`: ack, nack, leases, owners."""

    path: str
    closed: bool
    forked: bool
    _lock: threading.Lock
    _readable: threading.Condition
    _readers: int
    _store: Store
    _spaces: dict[bytes, Space]
    _leases: list[tuple[float, int, bytes, bytes, int, int]]
    _stale_leases: int
    _owned: dict[Any, Holdings]

    if TYPE_CHECKING:  # provided by Engine
        def _check(self) -> None: ...
        def _space(self, ns: bytes) -> Space: ...
        def _missing(self, key: bytes) -> DiskQueueError: ...
        def _count_deletes(self, sp: Space, lanes: Any, n: int,
                           from_tail: bool = False) -> None: ...
        def _plan_records(self, records: RecordOps,
                          puts: list[tuple[bytes, bytes]]) -> list[bytes]: ...

    def _reservation(self, sp: Space, lane: bytes, seq: int, attempts: Optional[int]) -> int:
        if self._leases:
            self._expire_leases()
        held = sp.reserved.get((lane, seq))
        if held is None or (attempts is not None and attempts != held):
            raise NotReserved(
                f"item {seq} is not reserved (already acked or nacked, or its lease expired)"
            )
        return held

    def find_reserved(self, ns: bytes, seq: int) -> list[bytes]:
        """Lanes holding a reservation with this seq (to resolve a bare id)."""
        with self._lock:
            self._check()
            if self._leases:
                self._expire_leases()
            return [lane for (lane, s) in self._space(ns).reserved if s == seq]

    def ack(self, ns: bytes, lane: bytes, seq: int, attempts: Optional[int] = None,
            records: RecordOps = ()) -> None:
        """Delete a reserved item, with ``records`` written in the same batch."""
        with self._lock:
            self._check()
            sp = self._space(ns)
            self._reservation(sp, lane, seq, attempts)
            puts: list[tuple[bytes, bytes]] = []
            deletes = [sp.item_key(lane, seq), sp.aside_key(lane, seq)]
            deletes += self._plan_records(records, puts)
            self._store.write(puts, deletes)
            del sp.reserved[(lane, seq)]
            self._leases_ended(1)
            self._count_deletes(sp, (lane,), 1)

    def nack(self, ns: bytes, lane: bytes, seq: int, attempts: Optional[int] = None,
             front: bool = True) -> int:
        """Put a reserved item back; return its seq (new when it goes to the back)."""
        with self._lock:
            self._check()
            sp = self._space(ns)
            held = self._reservation(sp, lane, seq, attempts)
            ln = sp.lanes[lane]
            if front:
                # The aside record holds the attempts, and for a client's reservation the
                # client process too: rewritten without it, so that a next holder does
                # not keep the item for that process.
                self._store.write([(sp.aside_key(lane, seq), msgpack.packb(held))])
                del sp.reserved[(lane, seq)]
                ln.add_front(seq)
                sp.aside[(lane, seq)] = held
                new_seq = seq
            else:
                old_key = sp.item_key(lane, seq)
                data = self._store.get(old_key)
                if data is None:
                    raise self._missing(old_key)
                new_seq = ln.tail
                ln_after = Lane(ln.head, ln.tail + 1)
                self._store.write(
                    [(sp.item_key(lane, new_seq), data),
                     (sp.aside_key(lane, new_seq), msgpack.packb(held)),
                     sp.pointer(lane, ln_after)],
                    (old_key, sp.aside_key(lane, seq)),
                )
                del sp.reserved[(lane, seq)]
                ln.tail += 1
                sp.aside[(lane, new_seq)] = held
                self._count_deletes(sp, (lane,), 1)
            sp.ready += 1
            sp.recount(lane, ln)
            self._leases_ended(1)
            if self._readers:
                self._readable.notify()
            return new_seq

    def in_flight(self, ns: bytes) -> int:
        with self._lock:
            self._check()
            if self._leases:
                self._expire_leases()
            return len(self._space(ns).reserved)

    def _expire_leases(self) -> None:
        now = time.monotonic()
        while self._leases and self._leases[0][0] <= now:
            _, _, ns, lane, seq, attempts = heapq.heappop(self._leases)
            sp = self._spaces[ns]
            if sp.reserved.get((lane, seq)) != attempts:
                continue  # acked or nacked meanwhile
            self._return_to_front(sp, lane, seq, attempts)
            log.info("lease of item %d expired; it is back at the front", seq)

    def _leases_ended(self, n: int) -> None:
        """``n`` reservations ended before their lease, so their heap entries are stale.
        A consumer may ack millions within one hour-long lease, so the stale entries
        are dropped whenever they could outnumber the live ones (each rebuild is paid
        for by as many acks as it keeps entries)."""
        self._stale_leases += n
        if self._stale_leases > 64 and 2 * self._stale_leases > len(self._leases):
            spaces = self._spaces
            self._leases = [entry for entry in self._leases
                            if spaces[entry[2]].reserved.get((entry[3], entry[4])) == entry[5]]
            heapq.heapify(self._leases)
            self._stale_leases = 0

    def ack_many(self, held: list[tuple[bytes, bytes, int, int]]) -> None:
        """Delete several reserved ``(ns, lane, seq, attempts)`` items in one batch."""
        with self._lock:
            self._check()
            deletes = []
            for ns, lane, seq, attempts in held:
                sp = self._space(ns)
                self._reservation(sp, lane, seq, attempts)
                deletes += [sp.item_key(lane, seq), sp.aside_key(lane, seq)]
            self._store.write((), deletes)
            for ns, lane, seq, _ in held:
                sp = self._spaces[ns]
                del sp.reserved[(lane, seq)]
                self._count_deletes(sp, (lane,), 1)
            self._leases_ended(len(held))

    def _own(self, owner: Any, held: tuple[bytes, bytes, int, int]) -> None:
        """Note that ``owner`` holds a reservation. A connection may live for millions of
        them, so the ones it no longer holds are dropped whenever they could outnumber
        the rest."""
        owned = self._owned.get(owner)
        if owned is None:
            owned = self._owned[owner] = Holdings()
        owned.append(held)
        if len(owned) >= owned.limit:
            owned[:] = [(ns, lane, seq, attempts) for ns, lane, seq, attempts in owned
                        if self._spaces[ns].reserved.get((lane, seq)) == attempts]
            owned.limit = max(Holdings.limit, 2 * len(owned))

    def release_owner(self, owner: Any) -> int:
        """Return every reservation ``owner`` still holds to the front; count them."""
        with self._lock:
            back = [(self._spaces[ns], lane, seq, attempts)
                    for ns, lane, seq, attempts in self._owned.pop(owner, ())
                    if self._spaces[ns].reserved.get((lane, seq)) == attempts]
            if back and not (self.closed or self.forked):
                # Their records name the client: rewritten without it (see nack).
                self._store.write([(sp.aside_key(lane, seq), msgpack.packb(attempts))
                                   for sp, lane, seq, attempts in back])
            returned = len(back)
            for sp, lane, seq, attempts in back:
                self._return_to_front(sp, lane, seq, attempts)
            self._leases_ended(returned)
            return returned

    def _return_to_front(self, sp: Space, lane: bytes, seq: int, attempts: int) -> None:
        del sp.reserved[(lane, seq)]
        ln = sp.lanes[lane]
        ln.add_front(seq)
        sp.aside[(lane, seq)] = attempts
        sp.ready += 1
        sp.recount(lane, ln)
        if self._readers:
            self._readable.notify()
