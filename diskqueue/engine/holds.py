"""Pops from the top held for a client until it confirms them (a Stack's pop).

A take from the head is held as a reservation: the item stays at its key below the
head. A take from the tail cannot be: the popped seqs are the ones the next pushes
use. So such a take moves the item, in the batch that pops it, to a *held* record
(``keys.HELD``: its attempts and data, under an id of its own). Confirming deletes
the record; putting it back (the reply never arrived, or the client went away) pushes
it again on top of its lane; and a holder that dies with held records leaves them to
the next open, which puts them back on top the same way. Nothing is lost at any point.
"""

from __future__ import annotations

import heapq
import itertools
import struct
import time
from collections.abc import Iterable
from typing import Any, Optional

import msgpack

from . import holders, keys
from .core import Core, Entry
from .holders import Holder
from .lanes import Space

_ATTEMPTS = struct.Struct(">I")
# A client's held record, after the attempts (with _CLIENT set): the client process and
# the seq it was popped from, so that a next holder keeps it while that process lives.
_CLIENT = 0x80000000
_HOLDER = struct.Struct(">IQQ")  # pid, start time, seq


def held_key(sp: Space, lane: bytes, hold: int) -> bytes:
    """The store key of held record ``hold`` of a lane."""
    return keys.HELD + keys.ns_bytes(sp.ns) + lane + hold.to_bytes(8, "big")


def held_data(value: bytes) -> bytes:
    """The item's data in the value of a held record."""
    (attempts,) = _ATTEMPTS.unpack_from(value)
    return value[_ATTEMPTS.size + (_HOLDER.size if attempts & _CLIENT else 0):]


class Holds(Core):
    """The engine's takes held for clients: hold_top, settle_tops, unreserve, and
    wait_for_change (how a server waits for the calls it parked).

    Each raises ``Closed`` when the engine is closed (settle_tops and unreserve then
    do nothing: the next open puts the items back), and ``DiskQueueError``
    when a write fails (then nothing changed).
    """

    def hold_top(self, ns: bytes, n: int, *, lane: Optional[bytes] = None,
                 desc: bool = False, block: bool = False, timeout: Optional[float] = None,
                 holder: Optional[Holder] = None) -> tuple[list[Entry], list[int]]:
        """Pop up to ``n`` items from the top, keeping them in held records; return the
        entries and the hold ids to settle with :meth:`settle_tops`."""
        with self._lock, self._interrupts:
            self._check()
            sp = self._space(ns)
            self._await_ready(sp, lane, block, timeout)
            self._ahead.clear()  # a Stack gives the popped seqs to its next pushes
            picked = self._pick(sp, n, lane, desc, True)
            entries: list[Entry] = []
            puts: list[tuple[bytes, bytes]] = []
            deletes: list[bytes] = []
            holds: list[int] = []
            for lane_key, seq in picked:
                key = sp.item_key(lane_key, seq)
                data = self._store.get(key)
                if data is None:
                    raise self._missing(key)
                attempts = sp.aside.get((lane_key, seq), 0)
                if (lane_key, seq) in sp.aside:
                    deletes.append(sp.aside_key(lane_key, seq))
                hold = next(self._top_ids)
                holds.append(hold)
                if holder is None:
                    head = _ATTEMPTS.pack(attempts)
                else:
                    head = _ATTEMPTS.pack(attempts | _CLIENT) + _HOLDER.pack(*holder, seq)
                puts.append((held_key(sp, lane_key, hold), head + data))
                deletes.append(key)
                entries.append((lane_key, seq, key, data, 0))
            moved = self._moved_pointers(sp, picked, True)
            puts.extend(sp.pointer(lane_key, ln) for lane_key, ln in moved)
            self._store.write(puts, deletes)
            self._apply_take(sp, picked, moved, entries, None)
            for hold, (lane_key, _) in zip(holds, picked, strict=True):
                self._tops[hold] = (ns, lane_key)
            self._count_deletes(sp, {lane_key for lane_key, _ in picked}, len(picked), True)
            if self._writers:
                self._room(len(picked))
            return entries, holds

    def settle_tops(self, holds: Iterable[int], *, put_back: bool) -> int:
        """Forget held pops (the client has them) or put them back on top of their
        lanes, the last popped deepest; return how many were put back."""
        with self._lock, self._interrupts:
            if self.closed or self.forked:
                return 0  # the records stay: the next open puts them back
            mine = [(hold, self._tops[hold]) for hold in holds if hold in self._tops]
            if not mine:
                return 0
            if not put_back:
                self._store.write((), [held_key(self._space(ns), lane, hold)
                                       for hold, (ns, lane) in mine])
            else:
                self._push_back([(ns, lane, hold) for hold, (ns, lane) in reversed(mine)])
            for hold, _ in mine:
                del self._tops[hold]
            return len(mine) if put_back else 0

    def _push_back(self, held: list[tuple[bytes, bytes, int]]) -> None:
        """Push the items of held records on top of their lanes, in this order."""
        puts: list[tuple[bytes, bytes]] = []
        deletes: list[bytes] = []
        tails: dict[tuple[bytes, bytes], int] = {}
        placed: list[tuple[Space, bytes, int, int]] = []
        for ns, lane, hold in held:
            sp = self._space(ns)
            key = held_key(sp, lane, hold)
            value = self._store.get(key)
            deletes.append(key)
            if value is None:
                continue
            (attempts,) = _ATTEMPTS.unpack_from(value)
            skip = _ATTEMPTS.size
            if attempts & _CLIENT:
                attempts &= ~_CLIENT
                skip += _HOLDER.size
            seq = tails.get((ns, lane)) or sp.lane(lane).tail
            tails[(ns, lane)] = seq + 1
            puts.append((sp.item_key(lane, seq), value[skip:]))
            if attempts:
                puts.append((sp.aside_key(lane, seq), msgpack.packb(attempts)))
            placed.append((sp, lane, seq, attempts))
        for (ns, lane), tail in tails.items():
            sp = self._space(ns)
            ln = sp.lanes[lane]
            puts.append((sp.pointer_prefix + lane, keys.POINTERS.pack(ln.head, tail)))
        self._store.write(puts, deletes)
        self._ahead.clear()
        for sp, lane, seq, attempts in placed:
            ln = sp.lanes[lane]
            ln.tail = max(ln.tail, seq + 1)
            if attempts:
                sp.aside[(lane, seq)] = attempts
            sp.ready += 1
            sp.recount(lane, ln)
        if placed:
            self._ready(len(placed))

    def _restore_tops(self) -> None:
        """At open: put back on top what a holder that died was holding for clients."""
        held = []
        living: dict[Holder, bool] = {}
        last = 0
        for key, value in self._store.iter_prefix(keys.HELD):
            sp, lane = self._split(key, 8)
            hold = int.from_bytes(key[-8:], "big")
            last = max(last, hold)
            (attempts,) = _ATTEMPTS.unpack_from(value)
            if attempts & _CLIENT:  # a live client's stays its: see inherited.py
                pid, start, seq = _HOLDER.unpack_from(value, _ATTEMPTS.size)
                holder = (pid, start)
                if holder not in living:
                    living[holder] = holders.alive(holder)
                # (a dead client's that it handed out, or may have: settled by a check)
                if living[holder] or self._handed_out(holder, (sp.ns, lane, seq),
                                                      held_data(value), hold) is not False:
                    self._tops[hold] = (sp.ns, lane)
                    self._inherited_tops[hold] = (holder, (sp.ns, lane, seq))
                    continue
            held.append((sp.ns, lane, hold))
        # Kept records keep their ids; a client names its pops by them (inherited.py),
        # so new ones start past any a holder before may have given (microseconds).
        self._top_ids = itertools.count(max(last + 1, time.time_ns() // 1000))
        if held:
            before = {sp.ns: sp.ready for sp in self._spaces.values()}
            self._push_back(sorted(held, key=lambda h: -h[2]))
            for sp in self._spaces.values():
                sp.unfinished += sp.ready - before.get(sp.ns, 0)

    def unreserve(self, held: Iterable[tuple[bytes, bytes, int, int]],
                  owner: Any = None) -> int:
        """Return reservations ``(ns, lane, seq, attempts)`` to the front with the
        attempts they had before they were made (a reply that was not delivered);
        count them. Ones no longer held so (acked, expired) are left alone.

        ``owner``: the one that made them (see :meth:`Takes.take`). The next
        reservation of such an item has the same attempts again, so they are struck
        from ``owner``'s holdings and from the leases here: else the end of ``owner``
        (:meth:`release_owner`), or the end of their lease, would return another's
        reservation of the same item."""
        with self._lock, self._interrupts:
            if self.closed or self.forked:
                return 0  # the aside records stay: the next open returns them
            mine = [(self._space(ns), lane, seq, attempts) for ns, lane, seq, attempts in held
                    if self._space(ns).reserved.get((lane, seq)) == attempts]
            if not mine:
                return 0
            self._store.write([(sp.aside_key(lane, seq), msgpack.packb(max(attempts - 1, 0)))
                               for sp, lane, seq, attempts in mine])
            for sp, lane, seq, attempts in mine:
                self._return_to_front(sp, lane, seq, max(attempts - 1, 0))
            gone = {(sp.ns, lane, seq, attempts) for sp, lane, seq, attempts in mine}
            owned = self._owned.get(owner) if owner is not None else None
            if owned:
                owned[:] = [one for one in owned if one not in gone]
            if self._leases:  # a rare path (a reply not delivered): a rebuild is fine
                self._leases = [one for one in self._leases if one[2:] not in gone]
                heapq.heapify(self._leases)
            return len(mine)

    def wait_for_change(self, *, room: bool, timeout: float) -> bool:
        """Sleep until an item is ready (``room``: until room is made) or ``timeout``:
        how a server's one thread waits for all the calls it parked. True when woken."""
        with self._lock, self._interrupts:
            if self.closed or self.forked:
                return False
            return self._sleep(room, timeout)
