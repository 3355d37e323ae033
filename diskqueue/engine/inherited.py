"""What a new holder keeps for the live clients of the holder before it.

A holder writes who holds each reservation and held take of a client into its record
(:mod:`diskqueue.holders`: pid and start time; for a reservation, the wall-clock end of
its lease). When the directory changes holder, whatever way the last one left, the
next one keeps those of processes still alive as they were: a reservation stays in
flight until its holder acks or nacks it, its lease runs out, or its process dies; a
held take (a dequeue or pop whose reply the client may have, its "got it" unread)
stays held until the client settles it with :meth:`Inheritance.confirm`, or its
process dies. What dead processes held goes back to the front (a pop: on top), as
before. The holder looks at the processes every second or so
(:meth:`Inheritance.check_holders`).
"""

from __future__ import annotations

import heapq
import math
import time
import zlib
from collections.abc import Iterable
from typing import Optional

import msgpack

from ..errors import DiskQueueError
from . import handed, holders
from .api import Take
from .core import Core
from .holders import Holder
from .holds import held_data, held_key
from .lanes import Lane, Space

Key = tuple[bytes, bytes, int]  # (ns, lane, seq) of a take, as its client saw it


LEDGER_SWEEP_EVERY = 10.0  # seconds between deletions of dead clients' notes
_FEW_ATTEMPTS = [msgpack.packb(n) for n in range(64)]  # packed once: every reserve writes one


def aside_value(attempts: int, holder: Optional[Holder], expiry: Optional[float]) -> bytes:
    """An aside record: the attempts alone, or with the client process holding the item
    and, for a reservation, the ``time.time()`` its lease ends (None: a held take)."""
    if holder is None:
        if 0 <= attempts < len(_FEW_ATTEMPTS):
            return _FEW_ATTEMPTS[attempts]
        return msgpack.packb(attempts)
    return msgpack.packb([attempts, holder[0], holder[1], expiry])


class Inheritance(Core):
    """The engine's keeping of what the last holder held for live clients: confirm,
    check_holders. Each raises ``Closed`` when the engine is closed (check_holders then
    returns 0), and ``DiskQueueError`` when a write fails (confirm also when the client's
    notes cannot be read now: check_holders then leaves a dead client's takes held
    until a later look can read them)."""

    def _load_aside(self, sp: Space, lane: bytes, ln: Lane, seq: int, value: bytes,
                    living: dict[Holder, bool]) -> None:
        """At open: one aside record; a live client's reservation or take stays its."""
        raw = msgpack.unpackb(value)
        if type(raw) is list:
            attempts, pid, start, expiry = raw
            holder = (pid, start)
            if seq < ln.head and (expiry is None or expiry > time.time()):
                if holder not in living:
                    living[holder] = holders.alive(holder)
                # A dead client's take that it handed out (or may have: its notes
                # cannot be read now) stays held too: a check_holders settles it.
                if living[holder] or expiry is None and self._handed_out(
                        holder, (sp.ns, lane, seq),
                        self._store.get(sp.item_key(lane, seq))) is not False:
                    sp.reserved[(lane, seq)] = attempts
                    self._inherited[(sp.ns, lane, seq)] = (holder, expiry, attempts)
                    if expiry is not None and expiry != math.inf:
                        heapq.heappush(self._leases, (
                            time.monotonic() + expiry - time.time(), next(self._lease_ids),
                            sp.ns, lane, seq, attempts))
                    return
            raw = attempts
        sp.aside[(lane, seq)] = raw
        if seq < ln.head:  # reserved by a process that is gone, or nacked: the front
            ln.add_front(seq)

    def check_holders(self, keep: Iterable[Holder] = ()) -> int:
        """Return to the front what inherited holders that died since held; forget what
        was settled meanwhile. Count the items returned. The notes of the processes in
        ``keep`` are kept, though they ended (the holder still means to write their
        confirmations: should it die first, the next one needs them)."""
        with self._lock, self._interrupts:
            if self.closed or self.forked:
                return 0
            if self._leases:
                self._expire_leases()
            heads = [key for key, (_, _, attempts) in self._inherited.items()
                     if self._spaces[key[0]].reserved.get(key[1:]) != attempts]
            for key in heads:
                del self._inherited[key]
            who = {h for h, _, _ in self._inherited.values()}
            who.update(h for h, _ in self._inherited_tops.values())
            dead = {h for h in who if not holders.alive(h)}
            kept = set(keep)
            self._sweep_ledgers(who | kept)
            if not dead:
                return 0
            for h in dead:
                self._handed.pop(h, None)  # read afresh: it noted more since open
            # Those whose notes cannot be read now wait for a later look: what they
            # handed out is not known, and a guess loses an item or gives it twice.
            dead = {h for h in dead if self._notes_of(h) is not None}
            if not dead:
                return 0
            heads = [k for k, (h, end, _) in self._inherited.items()
                     if h in dead and end is None and self._noted(h, k)]
            tops = [hold for hold, (h, k) in self._inherited_tops.items()
                    if h in dead and self._noted(h, k, hold)]
            self._settle_inherited(heads, tops)  # the dead client had these
            returned = self._give_back(
                [k for k, (h, _, _) in self._inherited.items() if h in dead],
                [hold for hold, (h, _) in self._inherited_tops.items() if h in dead])
            for h in dead:
                self._handed.pop(h, None)
                if h not in kept:
                    handed.forget(self.path, h)
            return returned

    def _sweep_ledgers(self, keep: set[Holder]) -> None:
        """Now and then, delete the notes of clients that ended (lock held)."""
        now = time.monotonic()
        if now >= self._next_ledger_sweep:
            self._next_ledger_sweep = now + LEDGER_SWEEP_EVERY
            handed.sweep(self.path, keep)

    def confirm(self, takes: list[Take], keep: list[Take], *, delivered: bool,
                holder: Optional[Holder] = None) -> bool:
        """A client's word, after its holder changed, on takes the last holder held for
        it (``holder``: the client process; in the holder itself, this process). A take
        is named by its key, the crc32 of its data and, a pop from the top, the id of
        its held record: a Stack pops and pushes at one seq, so the held pop there may
        be a later one whose reply never arrived.

        ``delivered``: the client handed ``takes`` out; those still held are deleted,
        and its other held takes, except ``keep`` (replies it is reading now), go back
        (their replies never arrived). Otherwise the client asks, before handing
        ``takes`` out, whether they are still its: all of them are deleted and True
        returned, or none, the ones still held go back, and False (take again).
        """
        with self._lock, self._interrupts:
            self._check()
            holder = holder or holders.me()
            heads: list[Key] = []
            tops: list[int] = []
            missing = False
            for ns, lane, seq, digest, hold in takes:
                key = (ns, lane, seq)
                got = self._inherited.get(key)
                if hold < 0:
                    if (got is not None and got[0] == holder and got[1] is None
                            and self._space(ns).reserved.get((lane, seq)) == got[2]
                            and self._digest(key) == digest):
                        heads.append(key)
                        continue
                elif (self._inherited_tops.get(hold) == (holder, key) and hold in self._tops
                        and hold not in tops and self._digest(key, hold) == digest):
                    tops.append(hold)
                    continue
                missing = True
            if missing and not delivered:
                self._give_back(heads, tops)
                return False
            self._settle_inherited(heads, tops)
            if delivered:
                # The rest goes back, but what the client noted it handed out (before
                # it closed and opened the directory again, say): its own word, kept
                # in a file for the next holders.
                kept = {tuple(take) for take in keep}
                heads = [k for k, (h, end, _) in self._inherited.items()
                         if h == holder and end is None
                         and (*k, self._digest(k), -1) not in kept]
                tops = [hold for hold, (h, k) in self._inherited_tops.items()
                        if h == holder and (*k, self._digest(k, hold), hold) not in kept]
                self._handed.pop(holder, None)
                if (heads or tops) and self._notes_of(holder) is None:
                    raise DiskQueueError(
                        f"{self.path}: cannot read this process's notes of what it took "
                        "now (out of file descriptors?); nothing else was settled. Try "
                        "again")
                noted = {k for k in heads if self._noted(holder, k)}
                noted_tops = {hold for hold in tops if self._noted(
                    holder, self._inherited_tops[hold][1], hold)}
                self._handed.pop(holder, None)
                self._settle_inherited([k for k in heads if k in noted],
                                       [hold for hold in tops if hold in noted_tops])
                self._give_back([k for k in heads if k not in noted],
                                [hold for hold in tops if hold not in noted_tops])
            return not missing

    def _data(self, key: Key, hold: Optional[int] = None) -> Optional[bytes]:
        """The data of an inherited take at ``key`` (``hold``: a pop from the top, held
        so); None when it is gone (lock held)."""
        ns, lane, seq = key
        sp = self._spaces[ns]
        if hold is None:
            return self._store.get(sp.item_key(lane, seq))
        value = self._store.get(held_key(sp, lane, hold))
        return None if value is None else held_data(value)

    def _digest(self, key: Key, hold: Optional[int] = None) -> Optional[int]:
        """The crc32 of an inherited take's data, as its client names it (None: gone)."""
        data = self._data(key, hold)
        return None if data is None else zlib.crc32(data)

    def _noted(self, holder: Holder, key: Key, hold: Optional[int] = None
               ) -> Optional[bool]:
        """Whether client ``holder`` noted that it handed out the take at ``key`` that
        this holder inherited for it (``hold``: a pop from the top, held so); None when
        its notes cannot be read now (lock held)."""
        return self._handed_out(holder, key, self._data(key, hold),
                                -1 if hold is None else hold)

    def _settle_inherited(self, heads: Iterable[Key], tops: Iterable[int]) -> None:
        """Delete inherited held takes (``tops``: pops by hold id): their client has
        them."""
        deletes: list[bytes] = []
        for ns, lane, seq in heads:
            sp = self._spaces[ns]
            deletes += [sp.item_key(lane, seq), sp.aside_key(lane, seq)]
        for hold in tops:
            ns, lane, _ = self._inherited_tops[hold][1]
            deletes.append(held_key(self._spaces[ns], lane, hold))
        if not deletes:
            return
        self._store.write((), deletes)
        for key in heads:
            ns, lane, seq = key
            sp = self._spaces[ns]
            del sp.reserved[(lane, seq)]
            del self._inherited[key]
            self._count_deletes(sp, (lane,), 1)
        for hold in tops:
            del self._inherited_tops[hold]
            del self._tops[hold]

    def _give_back(self, heads: Iterable[Key], tops: Iterable[int]) -> int:
        """Return inherited takes and reservations to the front (``tops``: pops by hold
        id, on top)."""
        back = []
        for key in heads:
            _, _, attempts = self._inherited.pop(key)
            ns, lane, seq = key
            sp = self._spaces[ns]
            if sp.reserved.get((lane, seq)) == attempts:
                back.append((sp, lane, seq, attempts))
        if back:
            self._store.write([(sp.aside_key(lane, seq), aside_value(attempts, None, None))
                               for sp, lane, seq, attempts in back])
            for sp, lane, seq, attempts in back:
                self._return_to_front(sp, lane, seq, attempts)
            self._leases_ended(len(back))
        held = []
        for hold in tops:
            ns, lane, _ = self._inherited_tops.pop(hold)[1]
            if self._tops.pop(hold, None) is not None:
                held.append((ns, lane, hold))
        if held:
            self._push_back(held)
        return len(back) + len(held)
