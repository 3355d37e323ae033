# mypy: disable-error-code="misc"
# (methods say ``self: Engine``: they are the engine's, kept in a module of their own)
"""Taking: dequeue, pop and reserve. The items are read, then one batch deletes them (or,
for a reservation, records their attempts) with the pointers they move."""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any, Optional

from ..errors import Empty
from . import keys
from .compaction import COMPACT_EVERY
from .inherited import aside_value
from .lanes import Lane, Space
from .push import _deadline

if TYPE_CHECKING:
    from .engine import Engine, Entry

_pack = keys.POINTERS.pack

# A lane dequeued twice in a row is read ahead: this many items, or this many bytes of
# values, in one range read instead of one get per item.
READ_AHEAD = 64
READ_AHEAD_BYTES = 256 * 1024

# Run on the data of the items a take is about to remove or reserve, after they are
# read and before anything is written: a handle passes its decoder, so an item it cannot
# decode raises there and stays where it was. Local only, never sent to an owner.
Check = Optional[Callable[[list[bytes]], None]]


class Takes:
    """Mixin of :class:`diskqueue.engine.Engine`: take, take_run, take_first, pop_one."""

    _ahead: deque[tuple[bytes, bytes]]
    _ahead_lane: Optional[Lane]

    def take(self: Engine, ns: bytes, n: int = 1, *, lane: Optional[bytes] = None,
             desc: bool = False, from_tail: bool = False, lease: Optional[float] = None,
             block: bool = False, timeout: Optional[float] = None,
             owner: Any = None, check: Check = None, held: bool = False) -> list[Entry]:
        """Remove (or, with ``lease``, reserve) up to ``n`` ready items in dequeue order.

        ``owner`` tags reservations so that :meth:`release_owner` can return them all
        (a socket connection that went away); ``lease=math.inf`` never expires.
        ``held``: the reservations are a client's takes, held until it confirms them.
        ``check`` is called with the items' data before anything changes; if it raises,
        nothing is taken.
        """
        with self._lock:
            if self.closed or self.forked:
                self._refuse()
            sp = self._spaces.get(ns) or self._space(ns)
            if self._leases or not (sp.ready if lane is None else lane in sp.active):
                self._await_ready(sp, lane, block, timeout)
            return self._take(sp, n, lane, desc, from_tail, lease, owner, check, held)

    def take_run(self: Engine, ns: bytes, lane: bytes, n: int, from_tail: bool = False,
                 block: bool = False, timeout: Optional[float] = None, *,
                 check: Check = None) -> tuple[Sequence[int], list[tuple[bytes, bytes]]]:
        """``take`` of up to ``n`` items of one lane, without a lease, as the seqs and the
        ``(key, data)`` pairs: the columns a handle builds Items from (dequeue_many)."""
        with self._lock:
            if self.closed or self.forked:
                self._refuse()
            sp = self._spaces.get(ns) or self._space(ns)
            if self._leases or lane not in sp.active:
                self._await_ready(sp, lane, block, timeout)
            runs = self._plan_runs(sp, n, lane, False, from_tail)
            if runs is not None:
                ((_, seqs, pairs),) = self._drain_runs(sp, runs, from_tail, check)
                return seqs, pairs
            entries = self._take(sp, n, lane, False, from_tail, None, None, check)
            return [e[1] for e in entries], [(e[2], e[3]) for e in entries]

    def take_first(self: Engine, nss: list[bytes], lease: Optional[float] = None,
                   block: bool = False, timeout: Optional[float] = None,
                   owner: Any = None, *, check: Check = None,
                   held: bool = False) -> tuple[bytes, Entry]:
        """Take one item from the first namespace in ``nss`` that has one (strict order)."""
        end = _deadline(block, timeout)
        with self._lock:
            self._check()
            while True:
                if self._leases:
                    self._expire_leases()
                for ns in nss:
                    sp = self._space(ns)
                    if sp.ready:
                        return ns, self._take(sp, 1, None, False, False, lease, owner,
                                              check, held)[0]
                self._wait_readable(block, end, f"nothing ready in {len(nss)} queues")

    def pop_one(self: Engine, ns: bytes, lane: Optional[bytes], desc: bool = False,
                from_tail: bool = False, block: bool = False,
                timeout: Optional[float] = None, *, check: Check = None) -> Entry:
        """``take`` of one item without a lease: the hot path of dequeue and pop."""
        with self._lock:
            if self.closed or self.forked:
                self._refuse()
            sp = self._spaces.get(ns) or self._space(ns)
            if lane is not None and not self._leases:
                entry = self._take_one(sp, lane, desc, from_tail, check)
                if entry is not None:
                    return entry
            if self._leases or not (sp.ready if lane is None else lane in sp.active):
                self._await_ready(sp, lane, block, timeout)
            return self._take_one(sp, lane, desc, from_tail, check) or self._take(
                sp, 1, lane, desc, from_tail, None, None, check
            )[0]

    def _take(self: Engine, sp: Space, n: int, lane: Optional[bytes], desc: bool, from_tail: bool,
              lease: Optional[float], owner: Any = None, check: Check = None,
              held: bool = False) -> list[Entry]:
        """The general take, with the lock held and at least one item ready."""
        if lease is None and n > 1:
            runs = self._plan_runs(sp, n, lane, desc, from_tail)
            if runs is not None:
                return self._take_runs(sp, runs, from_tail, check)
        if from_tail:
            self._ahead.clear()  # a Stack gives the popped seqs to its next pushes
        picked = self._pick(sp, n, lane, desc, from_tail)
        entries: list[Entry] = []
        deletes: list[bytes] = []
        puts: list[tuple[bytes, bytes]] = []
        # A client's reservations name its process and when the lease ends (None: a
        # held take), so that the next holder keeps them while it lives: see
        # inherited.py. This process's own do not: they end when it closes the
        # directory, as a client's end when it closes its connection.
        holder = getattr(owner, "holder", None) if lease is not None else None
        expiry = None if held or holder is None else time.time() + lease  # type: ignore[operator]
        for ln_key, seq in picked:
            key = sp.item_prefix + ln_key + seq.to_bytes(8, "big")
            data = self._store.get(key)
            if data is None:
                raise self._missing(key)
            attempts = sp.aside.get((ln_key, seq), 0)
            if lease is None:
                deletes.append(key)
                if (ln_key, seq) in sp.aside:
                    deletes.append(sp.aside_key(ln_key, seq))
                entries.append((ln_key, seq, key, data, 0))
            else:
                attempts += 1
                puts.append((sp.aside_key(ln_key, seq), aside_value(attempts, holder, expiry)))
                entries.append((ln_key, seq, key, data, attempts))
        if check is not None:
            check([entry[3] for entry in entries])
        moved = self._moved_pointers(sp, picked, from_tail)
        puts.extend(sp.pointer(lane_key, ln) for lane_key, ln in moved)
        self._store.write(puts, deletes)
        self._apply_take(sp, picked, moved, entries, lease, owner)
        if lease is None:
            self._count_deletes(sp, {lane_key for lane_key, _ in picked}, len(picked),
                                from_tail)
        if self._writers:
            self._writable.notify(len(picked))
        return entries

    def _plan_runs(self: Engine, sp: Space, n: int, lane: Optional[bytes], desc: bool,
                   from_tail: bool) -> Optional[list[tuple[bytes, int, int]]]:
        """``(lane, lo, hi)`` runs holding the next ``n`` items, or None when an item
        put aside (nacked, returned) is among them and the general path must go."""
        runs = []
        for lane_key in (lane,) if lane is not None else sp.lane_order(desc):
            ln = sp.lanes[lane_key]
            if ln.front:
                return None
            k = min(n, ln.tail - ln.head)
            lo, hi = (ln.tail - k, ln.tail) if from_tail else (ln.head, ln.head + k)
            if sp.aside and any((lane_key, s) in sp.aside for s in range(lo, hi)):
                return None
            runs.append((lane_key, lo, hi))
            n -= k
            if n <= 0:
                break
        return runs

    def _take_runs(self: Engine, sp: Space, runs: list[tuple[bytes, int, int]],
                   from_tail: bool, check: Check = None) -> list[Entry]:
        """Dequeue whole runs as entries."""
        entries: list[Entry] = []
        for lane, seqs, pairs in self._drain_runs(sp, runs, from_tail, check):
            run_keys, datas = zip(*pairs, strict=True)
            entries += zip(repeat(lane), seqs, run_keys, datas, repeat(0))
        return entries

    def _drain_runs(self: Engine, sp: Space, runs: list[tuple[bytes, int, int]],
                    from_tail: bool, check: Check = None
                    ) -> list[tuple[bytes, range, list[tuple[bytes, bytes]]]]:
        """Dequeue whole runs: one range read each and one batch for all, however many
        items. Returns each run's lane, seqs and ``(key, data)`` pairs in dequeue order."""
        if from_tail:
            self._ahead.clear()  # a Stack gives the popped seqs to its next pushes
        out = []
        taken = []
        puts = []
        for lane, lo, hi in runs:
            ln = sp.lanes[lane]
            pairs = self._store.scan(start=ln.prefix + lo.to_bytes(8, "big"), limit=hi - lo)
            # Keys are unique and sorted: the right count and last key mean the whole run.
            if len(pairs) != hi - lo or pairs[-1][0] != ln.prefix + (hi - 1).to_bytes(8, "big"):
                found = {k for k, _ in pairs}
                raise self._missing(next(k for k in keys.item_keys(ln.prefix, lo, hi - lo)
                                         if k not in found))
            if from_tail:
                pairs.reverse()
                out.append((lane, range(hi - 1, lo - 1, -1), pairs))
            else:
                out.append((lane, range(lo, hi), pairs))
            taken.append(pairs)
            head, tail = (ln.head, lo) if from_tail else (hi, ln.tail)
            puts.append((ln.pointer_key, _pack(head, tail)))
        if check is not None:
            check([data for pairs in taken for _, data in pairs])
        self._store.write(puts, taken=taken)
        for lane, lo, hi in runs:
            ln = sp.lanes[lane]
            if from_tail:
                ln.tail = lo
            else:
                ln.head = hi
            sp.recount(lane, ln)
        n = sum(map(len, taken))
        sp.ready -= n
        self._count_deletes(sp, [lane for lane, _, _ in runs], n, from_tail)
        if self._writers:
            self._writable.notify(n)
        return out

    def _take_one(self: Engine, sp: Space, lane: Optional[bytes], desc: bool,
                  from_tail: bool, check: Check = None) -> Optional[Entry]:
        """The common dequeue: one item from a lane's run, nothing put aside before."""
        if lane is None:
            lane = sp.active[-1] if desc else sp.active[0]
        ln = sp.lanes.get(lane)
        if ln is None or ln.front:
            return None
        head, tail = ln.head, ln.tail
        if head >= tail:
            return None
        if from_tail:
            tail = seq = tail - 1
            self._ahead.clear()  # a Stack gives the popped seq to its next push
        else:
            seq = head
            head += 1
        if sp.aside and (lane, seq) in sp.aside:
            return None
        key = ln.prefix + seq.to_bytes(8, "big")
        ahead = self._ahead
        if not (ahead and ahead[0][0] == key) and self._ahead_lane is ln and tail - seq > 2:
            ahead.clear()
            ahead.extend(self._store.scan(start=key, stop=ln.prefix + tail.to_bytes(8, "big"),
                                          limit=READ_AHEAD, max_bytes=READ_AHEAD_BYTES))
            if not ahead or ahead[0][0] != key:
                raise self._missing(key)
        if ahead and ahead[0][0] == key:
            data = ahead[0][1]
            if check is not None:
                check([data])
            ahead.popleft()
            self._store.delete_put(key, ln.pointer_key, _pack(head, tail))
        elif check is not None:
            self._ahead_lane = ln
            got = self._store.get(key)
            if got is None:
                raise self._missing(key)
            data = got
            check([data])
            self._store.delete_put(key, ln.pointer_key, _pack(head, tail))
        else:
            self._ahead_lane = ln
            popped = self._store.pop(key, ln.pointer_key, _pack(head, tail))
            if popped is None:
                raise self._missing(key)
            data = popped
        ln.head = head
        ln.tail = tail
        sp.ready -= 1
        if head == tail:
            sp.active.discard(lane)
        sp.dirty.add(lane)
        if from_tail:
            sp.dirty_top.add(lane)
        self._deleted += 1
        if self._deleted >= COMPACT_EVERY:
            self._maybe_compact()
        if self._writers:
            self._writable.notify()
        return lane, seq, key, data, 0

    def _await_ready(self: Engine, sp: Space, lane: Optional[bytes], block: bool,
                     timeout: Optional[float]) -> None:
        end = _deadline(block, timeout)
        while True:
            if self._leases:
                self._expire_leases()
            if (sp.ready if lane is None else (lane in sp.active)):
                return
            self._wait_readable(block, end, "empty")

    def _wait_readable(self: Engine, block: bool, end: Optional[float], what: str) -> None:
        """Wait (lock held) for a push or the next lease expiry; Empty when out of time."""
        if not block:
            raise Empty(f"{self.path}: {what}")
        now = time.monotonic()
        remaining = None if end is None else end - now
        if remaining is not None and remaining <= 0:
            raise Empty(f"{self.path}: {what}, after waiting")
        if self._leases:
            until_lease = max(self._leases[0][0] - now, 0.0)
            remaining = until_lease if remaining is None else min(remaining, until_lease)
        self._readers += 1
        try:
            self._readable.wait(remaining)
        finally:
            self._readers -= 1
        self._check()

    def _pick(self: Engine, sp: Space, n: int, lane: Optional[bytes], desc: bool,
              from_tail: bool) -> list[tuple[bytes, int]]:
        lanes = (lane,) if lane is not None else sp.lane_order(desc)
        picked: list[tuple[bytes, int]] = []
        for lane_key in lanes:
            ln = sp.lanes[lane_key]
            for seq in itertools.islice(ln.seqs(from_tail), n - len(picked)):
                picked.append((lane_key, seq))
            if len(picked) >= n:
                break
        return picked

    @staticmethod
    def _moved_pointers(sp: Space, picked: list[tuple[bytes, int]],
                        from_tail: bool) -> list[tuple[bytes, Lane]]:
        """New head/tail of each lane the picked items came from (not yet applied)."""
        moved: dict[bytes, Lane] = {}
        for lane_key, seq in picked:
            ln = sp.lanes[lane_key]
            if not ln.head <= seq < ln.tail:
                continue
            new = moved.get(lane_key)
            if new is None:
                new = moved[lane_key] = Lane(ln.head, ln.tail)
            if from_tail:
                new.tail = min(new.tail, seq)
            else:
                new.head = max(new.head, seq + 1)
        return list(moved.items())

    def _apply_take(self: Engine, sp: Space, picked: list[tuple[bytes, int]],
                    moved: list[tuple[bytes, Lane]], entries: list[Entry],
                    lease: Optional[float], owner: Any = None) -> None:
        for lane_key, new in moved:
            ln = sp.lanes[lane_key]
            ln.head, ln.tail = new.head, new.tail
        for (lane_key, seq), entry in zip(picked, entries, strict=True):
            ln = sp.lanes[lane_key]
            if ln.front and seq in ln.front:
                ln.front.remove(seq)
            sp.aside.pop((lane_key, seq), None)
            if lease is not None:
                sp.reserved[(lane_key, seq)] = entry[4]
                if lease != math.inf:
                    heapq.heappush(self._leases, (time.monotonic() + lease,
                                                  next(self._lease_ids), sp.ns, lane_key, seq,
                                                  entry[4]))
                if owner is not None:
                    self._own(owner, (sp.ns, lane_key, seq, entry[4]))
        sp.ready -= len(picked)
        for lane_key in {lane_key for lane_key, _ in picked}:
            sp.recount(lane_key, sp.lanes[lane_key])
