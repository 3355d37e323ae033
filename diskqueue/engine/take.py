"""Taking: dequeue, pop and reserve. The items are read, then one batch deletes them (or,
for a reservation, records their attempts) with the pointers they move."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any, Optional

from ..errors import Empty
from . import keys
from .compaction import COMPACT_EVERY
from .core import Core, Entry, deadline
from .inherited import aside_value
from .lanes import Space

_pack = keys.POINTERS.pack

# A lane dequeued twice in a row is read ahead: this many items, or this many bytes of
# values, in one range read instead of one get per item.
READ_AHEAD = 64
READ_AHEAD_BYTES = 256 * 1024

# Run on the data of the items a take is about to remove or reserve, after they are
# read and before anything is written: a handle passes its decoder, so an item it cannot
# decode raises there and stays where it was. Local only, never sent to an owner.
Check = Optional[Callable[[list[bytes]], None]]


class Takes(Core):
    """The engine's takes: take, take_run, take_first, pop_one.

    Each raises ``Closed`` when the engine is closed, ``Empty`` when nothing is ready
    in time, ``Corrupted`` when an item's key is missing, what ``check`` raises (then
    nothing is taken), and ``DiskQueueError`` when the write fails (then
    nothing changed).
    """

    def serve_own_first(self, nss: Iterable[bytes],
                        wants: Optional[Callable[[], bool]]) -> bool:
        """While ``wants()`` says so, a client's reservation in ``nss`` finds nothing
        ready: this process's own worker takes those items itself (None: no more).

        A worker that holds the directory runs a short job for less than half of what
        the same job costs it when a client's worker runs it (the client's calls, served
        here, come on top of the job's own disk work), so a second worker process on
        short jobs made the drain slower, not faster. ``wants`` is called under the
        engine's lock: it must only read a flag. True: this engine holds the directory
        (a client's engine says False)."""
        with self._lock, self._interrupts:
            for ns in nss:
                if wants is None:
                    self._own_first.pop(ns, None)
                else:
                    self._own_first[ns] = wants
        return True

    def _kept_for_own(self, ns: bytes) -> bool:
        """Whether a client's reservation in ``ns`` is to find nothing (lock held)."""
        wants = self._own_first.get(ns)
        return wants is not None and wants()

    def take(self, ns: bytes, n: int = 1, *, lane: Optional[bytes] = None,
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
        with self._lock, self._interrupts:
            if self.closed or self.forked:
                self._refuse()
            sp = self._spaces.get(ns) or self._space(ns)
            if self._own_first and owner is not None and not held and self._kept_for_own(ns):
                raise Empty(f"{self.path}: the jobs are kept for the worker of the "
                            "process holding the directory while it keeps up")
            if self._leases or not (sp.ready if lane is None else lane in sp.active):
                self._await_ready(sp, lane, block, timeout)
            return self._take(sp, n, lane, desc, from_tail, lease, owner, check, held)

    def take_run(self, ns: bytes, lane: bytes, n: int, *, from_tail: bool = False,
                 block: bool = False, timeout: Optional[float] = None,
                 check: Check = None) -> tuple[Sequence[int], list[tuple[bytes, bytes]]]:
        """``take`` of up to ``n`` items of one lane, without a lease, as the seqs and the
        ``(key, data)`` pairs: the columns a handle builds Items from (dequeue_many)."""
        with self._lock, self._interrupts:
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

    def take_first(self, nss: list[bytes], *, lease: Optional[float] = None,
                   block: bool = False, timeout: Optional[float] = None,
                   owner: Any = None, check: Check = None,
                   held: bool = False) -> tuple[bytes, Entry]:
        """Take one item from the first namespace in ``nss`` that has one (strict order)."""
        end = deadline(block, timeout)
        with self._lock, self._interrupts:
            self._check()
            if self._own_first and owner is not None and not held:
                nss = [ns for ns in nss if not self._kept_for_own(ns)]
            while True:
                if self._leases:
                    self._expire_leases()
                for ns in nss:
                    sp = self._space(ns)
                    if sp.ready:
                        return ns, self._take(sp, 1, None, False, False, lease, owner,
                                              check, held)[0]
                self._wait_readable(block, end, f"nothing ready in {len(nss)} queues",
                                    tuple(nss))

    def pop_one(self, ns: bytes, lane: Optional[bytes], *, desc: bool = False,
                from_tail: bool = False, block: bool = False,
                timeout: Optional[float] = None, check: Check = None) -> Entry:
        """``take`` of one item without a lease: the hot path of dequeue and pop."""
        with self._lock, self._interrupts:
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

    def _take(self, sp: Space, n: int, lane: Optional[bytes], desc: bool, from_tail: bool,
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
        expiry = None if held or holder is None or lease is None else time.time() + lease
        cut = len(sp.item_prefix)
        item_keys = [sp.item_prefix + ln_key + seq.to_bytes(8, "big") for ln_key, seq in picked]
        for (ln_key, seq), key, data in zip(picked, item_keys,
                                            self._read_items(picked, item_keys), strict=True):
            if data is None:
                raise self._missing(key)
            attempts = sp.aside.get((ln_key, seq), 0) if sp.aside else 0
            if lease is None:
                deletes.append(key)
                if (ln_key, seq) in sp.aside:
                    deletes.append(sp.aside_key(ln_key, seq))
                entries.append((ln_key, seq, key, data, 0))
            else:
                attempts += 1
                # (the aside key is the item key with the aside prefix: sp.aside_key)
                puts.append((sp.aside_prefix + key[cut:], aside_value(attempts, holder, expiry)))
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
            self._room(len(picked))
        return entries

    def _read_items(self, picked: list[tuple[bytes, int]], item_keys: list[bytes]
                    ) -> list[Optional[bytes]]:
        """The data of the ``picked`` items at ``item_keys`` (None where missing): one
        range read when they are a run of seqs of one lane (as a reserve of a batch takes
        them: no deleted key lies between them), else one get each."""
        store = self._store
        if (len(picked) > 2 and picked[0][0] == picked[-1][0]
                and picked[-1][1] - picked[0][1] == len(picked) - 1):
            rows = store.scan(start=item_keys[0], stop=item_keys[-1] + b"\x00",
                              limit=len(item_keys))
            if [key for key, _ in rows] == item_keys:
                return [data for _, data in rows]
        return [store.get(key) for key in item_keys]

    def _plan_runs(self, sp: Space, n: int, lane: Optional[bytes], desc: bool,
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

    def _take_runs(self, sp: Space, runs: list[tuple[bytes, int, int]],
                   from_tail: bool, check: Check = None) -> list[Entry]:
        """Dequeue whole runs as entries."""
        entries: list[Entry] = []
        for lane, seqs, pairs in self._drain_runs(sp, runs, from_tail, check):
            run_keys, datas = zip(*pairs, strict=True)
            entries += zip(repeat(lane), seqs, run_keys, datas, repeat(0))
        return entries

    def _drain_runs(self, sp: Space, runs: list[tuple[bytes, int, int]],
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

    def _take_one(self, sp: Space, lane: Optional[bytes], desc: bool,
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
        compactor = self._compactor
        compactor.deleted += 1
        if compactor.deleted >= COMPACT_EVERY:
            self._maybe_compact()
        if self._writers:
            self._writable.notify()
        return lane, seq, key, data, 0
