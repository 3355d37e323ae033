"""Reservations: the in-flight set of an engine (reserve is ``Engine.take`` with a lease).

A reserved item stays at its key; an aside record keeps its attempts, so on disk an
in-flight item and one returned to the front look the same, and a process that dies
holding reservations loses nothing: the next open puts them back at the front.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import msgpack

from ..errors import NotReserved
from .api import Ack, Guarded, Receipt
from .compaction import COMPACT_EVERY
from .core import Core
from .holders import Holder
from .lanes import Lane, Space
from .records import RecordOps, plan_records, receipt_put, record_key


class Reservations(Core):
    """The engine's in-flight set: find_reserved, ack, nack, in_flight, ack_many,
    release_owner, keep_for (a reservation is made by :meth:`Takes.take` with a lease).

    Each raises ``Closed`` when the engine is closed, ``NotReserved`` for an item not
    (or no longer) reserved so, and ``DiskQueueError`` when the write
    fails (then nothing changed). The acks and nack take a client's ``receipt``, a
    record of their result written in the same batch (see
    :mod:`diskqueue.sharing.receipts`): one sent again after a takeover is answered
    from it, not refused as ``NotReserved``.
    """

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
        with self._lock, self._interrupts:
            return [lane for (lane, s) in self._current(ns).reserved if s == seq]

    def ack(self, ns: bytes, lane: bytes, seq: int, *, attempts: Optional[int] = None,
            records: RecordOps = (), receipt: Optional[Receipt] = None) -> None:
        """Delete a reserved item, with ``records`` written in the same batch."""
        # The hot path of every finished job: the checks and keys of _reservation,
        # item_key, aside_key and _count_deletes, written out (a call each costs).
        with self._lock, self._interrupts:
            if self.closed or self.forked:
                self._refuse()
            sp = self._spaces.get(ns) or self._space(ns)
            if self._leases:
                self._expire_leases()
            at = (lane, seq)
            held = sp.reserved.get(at)
            if held is None or (attempts is not None and attempts != held):
                self._reservation(sp, lane, seq, attempts)  # raises NotReserved
            tail = lane + seq.to_bytes(8, "big")
            puts: list[tuple[bytes, bytes]] = []
            deletes = plan_records(records, puts)
            deletes += (sp.item_prefix + tail, sp.aside_prefix + tail)
            if receipt is not None:
                puts.append(receipt_put(receipt, None))
            self._store.write(puts, deletes)
            del sp.reserved[at]
            self._stale_leases += 1
            if self._stale_leases > 64:
                self._leases_ended(0)
            sp.dirty.add(lane)
            compactor = self._compactor
            compactor.deleted += 1
            if compactor.deleted >= COMPACT_EVERY:
                self._maybe_compact()

    def nack(self, ns: bytes, lane: bytes, seq: int, *, attempts: Optional[int] = None,
             front: bool = True, receipt: Optional[Receipt] = None) -> int:
        """Put a reserved item back; return its seq (new when it goes to the back)."""
        with self._lock, self._interrupts:
            self._check()
            sp = self._space(ns)
            held = self._reservation(sp, lane, seq, attempts)
            ln = sp.lanes[lane]
            if front:
                # The aside record holds the attempts, and for a client's reservation the
                # client process too: rewritten without it, so that a next holder does
                # not keep the item for that process.
                self._store.write([(sp.aside_key(lane, seq), msgpack.packb(held)),
                                   *_receipted(receipt, seq)])
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
                     sp.pointer(lane, ln_after), *_receipted(receipt, new_seq)],
                    (old_key, sp.aside_key(lane, seq)),
                )
                del sp.reserved[(lane, seq)]
                ln.tail += 1
                sp.aside[(lane, new_seq)] = held
                self._count_deletes(sp, (lane,), 1)
            sp.ready += 1
            sp.recount(lane, ln)
            self._leases_ended(1)
            self._ready(1)
            return new_seq

    def in_flight(self, ns: bytes) -> int:
        """How many items of ``ns`` are reserved."""
        with self._lock, self._interrupts:
            return len(self._current(ns).reserved)

    def ack_many(self, held: list[tuple[bytes, bytes, int, int]], *,
                 receipt: Optional[Receipt] = None) -> None:
        """Delete several reserved ``(ns, lane, seq, attempts)`` items in one batch."""
        with self._lock, self._interrupts:
            self._check()
            deletes = []
            for ns, lane, seq, attempts in held:
                sp = self._space(ns)
                self._reservation(sp, lane, seq, attempts)
                deletes += [sp.item_key(lane, seq), sp.aside_key(lane, seq)]
            self._store.write(_receipted(receipt, None), deletes)
            for ns, lane, seq, _ in held:
                sp = self._spaces[ns]
                del sp.reserved[(lane, seq)]
                self._count_deletes(sp, (lane,), 1)
            self._leases_ended(len(held))

    def ack_each(self, acks: list[Ack], *, guarded: Sequence[Guarded] = (),
                 receipt: Optional[Receipt] = None) -> list[bool]:
        """Delete reserved ``(ns, lane, seq, attempts, records)`` items, each with its
        ``records``, all in one batch: the acks of several callers that came together.
        For each, False when it was not reserved so (nothing of it is written, and the
        others are); ``Closed`` when the engine is closed.

        Each ``(ns, key, expected, records)`` of ``guarded`` writes its ``records`` in
        the same batch only if record ``key`` of ``ns`` holds ``expected`` (None: none)
        before it; its bool (False: nothing of it written) follows those of ``acks``.
        (A task worker starts a job read ahead so: the start is not written over an
        outcome another copy of the job stored meanwhile.)"""
        with self._lock, self._interrupts:
            self._check()
            puts: list[tuple[bytes, bytes]] = []
            deletes: list[bytes] = []
            done: list[tuple[Space, bytes, int]] = []
            stored: list[bool] = []
            for ns, lane, seq, attempts, records in acks:
                sp = self._space(ns)
                try:
                    self._reservation(sp, lane, seq, attempts)
                except NotReserved:
                    stored.append(False)
                    continue
                deletes += [sp.item_key(lane, seq), sp.aside_key(lane, seq)]
                deletes += plan_records(records, puts)
                done.append((sp, lane, seq))
                stored.append(True)
            get = self._store.get
            for ns, key, expected, records in guarded:
                landed = get(record_key(ns, key)) == expected
                if landed:
                    deletes += plan_records(records, puts)
                stored.append(landed)
            if receipt is not None:
                puts.append(receipt_put(receipt, stored))
            if puts or deletes:
                self._store.write(puts, deletes)
            if done:
                for sp, lane, seq in done:
                    del sp.reserved[(lane, seq)]
                    self._count_deletes(sp, (lane,), 1)
                self._leases_ended(len(done))
            return stored

    def release_owner(self, owner: Any) -> int:
        """Return every reservation ``owner`` still holds to the front; count them."""
        with self._lock, self._interrupts:
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

    def keep_for(self, owner: Any, holder: Holder) -> int:
        """Keep the reservations ``owner`` still holds for client process ``holder``,
        which lives on without it (a connection it gave up on): they stay in flight
        until it acks or nacks them, their lease ends, or the process dies, as the ones
        a last holder left for a live client (see inherited.py); their records name it
        already. Count them."""
        with self._lock, self._interrupts:
            kept = [(ns, lane, seq, attempts)
                    for ns, lane, seq, attempts in self._owned.pop(owner, ())
                    if self._spaces[ns].reserved.get((lane, seq)) == attempts]
            for ns, lane, seq, attempts in kept:
                # math.inf: a reservation (None is a held take), its lease counted here
                self._inherited[(ns, lane, seq)] = (holder, math.inf, attempts)
            return len(kept)


def _receipted(receipt: Optional[Receipt], result: object) -> list[tuple[bytes, bytes]]:
    """The put of ``receipt`` with ``result``, when there is one."""
    return [] if receipt is None else [receipt_put(receipt, result)]
