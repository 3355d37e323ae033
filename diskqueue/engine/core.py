"""The engine's core: its state, its lock, the reads, and what its parts share.

Every part of the engine (``push.py``, ``take.py``, ``leases.py``, ``records.py``,
``holds.py``, ``inherited.py``, ``watches.py``) is a subclass of :class:`Core`, typed
over it; a method one part needs from another lives here, or, where it belongs to that
part, is declared here once (the abstract methods at the end of :class:`Core`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any, Optional

import msgpack

from ..errors import Closed, Corrupted, DiskQueueError, Empty, IncompatibleType, OutOfBounds
from . import handed, keys, logs
from .api import Entry, Receipt
from .compaction import COMPACT_EVERY, Compactor
from .conditions import Condition, Interrupts, new_lock
from .groupcommit import GroupCommit
from .holders import Holder
from .lanes import Lane, Space
from .store import Store

log = logging.getLogger("diskqueue.engine")

FORMAT_VERSION = 1
# What a user opens for each structure kind a directory records, for messages
KIND_NAMES = {"queue": "Queue or Stack", "priority": "PriorityQueue",
              "prefix": "PrefixQueue", "tasks": "TaskQueue"}
# (lane, seq, key, data, attempts): what reads hand back to handles


def deadline(block: bool, timeout: Optional[float]) -> Optional[float]:
    """The ``time.monotonic()`` a blocking wait of ``timeout`` seconds ends (None: never)."""
    if not block or timeout is None:
        return None
    return time.monotonic() + timeout


class Holdings(list[tuple[bytes, bytes, int, int]]):
    """``(ns, lane, seq, attempts)`` of the reservations of one owner, some since gone."""

    limit = 64  # length at which the gone ones are dropped


class Core:
    """The state of one open directory and the operations every part builds on.

    Opening reads the pointers and aside records (never the items); a directory held by
    another process raises ``Locked``, an unreadable pointer record ``Corrupted``.
    Every public method raises ``Closed`` once the engine is closed (a
    ``DiskQueueError`` in a child that inherited it across fork()), ``Corrupted`` when
    an item it reads is missing, and the store's errors (see
    :class:`~diskqueue.engine.store.Store`) when LevelDB fails.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.refs = 0
        self.closed = False
        self.forked = False
        self._lock = new_lock()  # see conditions.py: a signal's exception in a wait
        # ... or after a write: every call runs in `with self._lock, self._interrupts:`
        self._interrupts = Interrupts(self._after_interrupt)
        self._readable = Condition(self._lock)
        self._writable = Condition(self._lock)
        self._all_done = Condition(self._lock)
        self._idle = Condition(self._lock)
        self._outside = 0  # compactions using the store outside the lock (see _compacting)
        self._readers = 0  # threads waiting for an item (so notify only when someone waits)
        self._writers = 0  # threads waiting for room under maxsize
        # What the waiting readers and writers wait for (a queue, a lane of it, or any
        # change), and how many of each: while they all wait for the same, a change wakes
        # as many as it can serve; else it wakes them all, since the ones woken could be
        # waiting for another queue and the one it serves would sleep on.
        self._wants: tuple[dict[object, int], dict[object, int]] = ({}, {})
        # Told of new ready items beside the threads (see watches.py); a tuple replaced
        # whole, so that a change never meets an iteration.
        self._watchers: tuple[Callable[[int], None], ...] = ()
        # Namespaces whose items this process's own worker takes first, and whether it
        # wants more now (see Takes.serve_own_first).
        self._own_first: dict[bytes, Callable[[], bool]] = {}
        self._synced = Condition(self._lock)
        self._sync_started = self._sync_done = 0  # fsync generations (group commit)
        self._sync_running = False
        self._group = GroupCommit(self._commit_pushes)
        self._spaces: dict[bytes, Space] = {}
        self._leases: list[tuple[float, int, bytes, bytes, int, int]] = []
        self._lease_ids = itertools.count()
        self._stale_leases = 0  # heap entries of reservations that ended before their lease
        # Read-ahead of the lane being drained: (key, data) of its next items, and the
        # lane whose last dequeue missed it (a second dequeue in a row fills it).
        self._ahead: deque[tuple[bytes, bytes]] = deque()
        self._ahead_lane: Optional[Lane] = None
        self._owned: dict[Any, Holdings] = {}
        self._tops: dict[int, tuple[bytes, bytes]] = {}  # pops held for clients: (ns, lane)
        self._top_ids = itertools.count(1)
        # What live clients of the last holder hold (see inherited.py):
        # (ns, lane, seq) -> (holder, lease end or None for a held take, attempts)
        self._inherited: dict[tuple[bytes, bytes, int], tuple[Holder, Optional[float], int]] = {}
        # hold id -> (holder, (ns, lane, seq) the client popped): by hold, since a Stack
        # pushes where it popped and two clients' held pops can share a seq
        self._inherited_tops: dict[int, tuple[Holder, tuple[bytes, bytes, int]]] = {}
        # What dead clients noted they handed out (handed.py), read once each
        self._handed: dict[Holder, frozenset[bytes]] = {}
        self._next_ledger_sweep = 0.0
        self._store = Store(path)
        try:  # whatever ends the open (a signal handler's exception too) closes the store
            self._compactor = Compactor(self._store, self.path, self._dirty_ranges,
                                        self._compacting, self._compacted)
            self._load()
        except BaseException:
            self._store.close()
            raise

    # -- opening ---------------------------------------------------------------
    def _load(self) -> None:
        """Read pointers and aside records: never the items, never consumed keys."""
        self.foreign = (self._store.get(keys.META + b"kind") is None
                        and bool(self._store.scan(limit=1)))
        if self.foreign:
            return  # someone else's LevelDB: ensure_kind refuses it, nothing is parsed
        try:
            self._parse_pointers()
        except (ValueError, TypeError, IndexError, msgpack.UnpackException) as exc:
            raise Corrupted(self.path, f"unreadable pointer record: {exc}") from exc
        self._restore_tops()
        self._handed.clear()  # check_holders reads the notes of the kept ones again

    def _parse_pointers(self) -> None:
        for key, value in self._store.iter_prefix(keys.POINTER):
            sp, lane = self._split(key, 0)
            ln = sp.lane(lane)
            ln.head, ln.tail = keys.POINTERS.unpack(value)
        living: dict[Holder, bool] = {}
        for key, value in self._store.iter_prefix(keys.ASIDE):
            sp, lane = self._split(key, 8)
            seq = int.from_bytes(key[-8:], "big")
            self._load_aside(sp, lane, sp.lane(lane), seq, value, living)
        for sp in self._spaces.values():
            for lane, ln in sp.lanes.items():
                sp.ready += ln.ready
                sp.recount(lane, ln)
            sp.unfinished = sp.ready

    def _split(self, key: bytes, tail: int) -> tuple[Space, bytes]:
        """The space and lane of a pointer, aside or held key (``tail``: bytes after)."""
        n = key[1]
        ns = key[2 : 2 + n]
        lane = key[2 + n : len(key) - tail]
        return self._space(ns), lane

    def _space(self, ns: bytes) -> Space:
        sp = self._spaces.get(ns)
        if sp is None:
            sp = self._spaces[ns] = Space(ns)
        return sp

    def ensure_kind(self, kind: str, accepts: Iterable[str]) -> None:
        """Record the structure kind on first use; refuse a directory of another kind.

        Raises ``IncompatibleType`` for another kind or a LevelDB that is not a
        diskqueue, ``Closed`` when closed.
        """
        with self._lock, self._interrupts:
            self._check()
            stored = self._store.get(keys.META + b"kind")
            if stored is None:
                if self.foreign:
                    raise IncompatibleType(f"{self.path} holds a LevelDB that is not a diskqueue")
                self._store.write(
                    [(keys.META + b"kind", kind.encode()),
                     (keys.META + b"format", str(FORMAT_VERSION).encode())]
                )
                return
            if stored.decode() not in set(accepts) | {kind}:
                held, wanted = (KIND_NAMES.get(k, k) for k in (stored.decode(), kind))
                raise IncompatibleType(
                    f"{self.path} holds a {held}, not a {wanted}: open it as a {held}"
                )

    # -- checks and errors -----------------------------------------------------
    def _check(self) -> None:
        if self.closed or self.forked:
            self._refuse()

    def _refuse(self) -> None:
        if self.forked:
            raise DiskQueueError(
                f"{self.path} was opened before fork(); open it again in this process"
            )
        raise Closed(f"{self.path} is closed")

    def _missing(self, key: bytes) -> DiskQueueError:
        return Corrupted(self.path, f"item {key!r} is missing")

    def _emptiness(self, sp: Space, lane: Optional[bytes], what: str) -> DiskQueueError:
        empty = not sp.ready if lane is None else lane not in sp.active
        if empty:
            return Empty(f"{self.path} is empty")
        return OutOfBounds(f"{what} is outside {self.path}")

    def _current(self, ns: bytes) -> Space:
        """The space of ``ns`` for a read (lock held): refuses when closed, and first
        returns expired reservations, so the read sees them."""
        self._check()
        if self._leases:
            self._expire_leases()
        return self._space(ns)

    def _holding(self, sp: Space, lane: bytes, seq: int) -> None:
        """Refuse (``Empty`` or ``OutOfBounds``) unless ``seq`` is a ready item of ``lane``."""
        ln = sp.lanes.get(lane)
        if ln is None or not ln.holds(seq):
            raise self._emptiness(sp, None, f"id {seq}")

    # -- reads -----------------------------------------------------------------
    def peek(self, ns: bytes, offset: int = 0, *, lane: Optional[bytes] = None,
             desc: bool = False, from_tail: bool = False) -> Entry:
        """The ready item ``offset`` places from the front of the dequeue order.

        Raises ``Empty`` when nothing is ready, ``OutOfBounds`` past the last item.
        """
        with self._lock, self._interrupts:
            sp = self._current(ns)
            lanes = (lane,) if lane is not None else sp.lane_order(desc)
            left = offset
            for lane_key in lanes:
                ln = sp.lanes.get(lane_key)
                if ln is not None and left < ln.ready:
                    return self._read(sp, lane_key, ln.at_offset(left, from_tail))
                left -= ln.ready if ln is not None else 0
            raise self._emptiness(sp, lane, f"offset {offset}")

    def get(self, ns: bytes, lane: bytes, seq: int) -> Entry:
        """The ready item ``seq`` of ``lane``; ``Empty`` or ``OutOfBounds`` when it is not
        one (taken, reserved, or never put)."""
        with self._lock, self._interrupts:
            sp = self._current(ns)
            self._holding(sp, lane, seq)
            return self._read(sp, lane, seq)

    def _read(self, sp: Space, lane: bytes, seq: int) -> Entry:
        key = sp.item_key(lane, seq)
        data = self._store.get(key)
        if data is None:
            raise self._missing(key)
        return lane, seq, key, data, 0

    def update(self, ns: bytes, lane: bytes, seq: int, data: bytes) -> bytes:
        """Replace the data of the ready item ``seq`` of ``lane`` in place; return its key.
        Raises as :meth:`get` does."""
        with self._lock, self._interrupts:
            sp = self._current(ns)
            self._holding(sp, lane, seq)
            key = sp.item_key(lane, seq)
            self._store.put(key, data)
            self._ahead.clear()
            return key

    def length(self, ns: bytes, lane: Optional[bytes] = None) -> int:
        """How many items are ready in ``ns`` (or in one ``lane`` of it)."""
        with self._lock, self._interrupts:
            sp = self._current(ns)
            if lane is None:
                return sp.ready
            ln = sp.lanes.get(lane)
            return ln.ready if ln else 0

    def lanes(self, ns: bytes, *, desc: bool = False) -> list[bytes]:
        """Lanes holding ready items, in key order (or reversed)."""
        with self._lock, self._interrupts:
            return list(self._current(ns).lane_order(desc))

    def scan(self, ns: bytes, *, lane: Optional[bytes] = None, desc: bool = False,
             from_tail: bool = False, after: Optional[tuple[bytes, int]] = None,
             limit: int = 256) -> list[Entry]:
        """A page of ready items in dequeue order, after a ``(lane, seq)`` cursor."""
        with self._lock, self._interrupts:
            sp = self._current(ns)
            order = list((lane,) if lane is not None else sp.lane_order(desc))
            if after is not None:
                if after[0] in order:
                    order = order[order.index(after[0]):]
                else:
                    order = [k for k in order if (k < after[0]) == desc and k != after[0]]
            page: list[Entry] = []
            for lane_key in order:
                ln = sp.lanes.get(lane_key)
                if ln is None:
                    continue
                cursor = after[1] if after is not None and after[0] == lane_key else None
                for seq in itertools.islice(ln.seqs(from_tail, cursor), limit - len(page)):
                    page.append(self._read(sp, lane_key, seq))
                if len(page) >= limit:
                    break
            return page

    def info(self) -> dict[str, Any]:
        """Counts of every namespace: ready and reserved items, lanes with ready items."""
        with self._lock, self._interrupts:
            self._check()
            return {
                ns.decode("utf-8", "replace"): {
                    "ready": sp.ready, "reserved": len(sp.reserved), "lanes": len(sp.active)
                }
                for ns, sp in self._spaces.items()
            }

    # -- clearing --------------------------------------------------------------
    def clear(self, ns: bytes) -> None:
        """Remove every item (reserved ones too); ids keep counting."""
        with self._lock, self._interrupts:
            self._check()
            sp = self._space(ns)
            puts = []
            for lane_key, ln in sp.lanes.items():
                if ln.ready or ln.front:
                    puts.append(sp.pointer(lane_key, Lane(ln.tail, ln.tail)))
            aside = [sp.aside_key(lane_key, seq) for lane_key, seq in
                     itertools.chain(sp.aside, sp.reserved)]
            ended = len(sp.reserved)
            self._store.write(puts, aside)  # from here the items are consumed keys
            self._ahead.clear()
            for key, _ in puts:
                lane_key = key[len(sp.pointer_prefix):]
                ln = sp.lanes[lane_key]
                ln.head, ln.front = ln.tail, None
            for lane_key, _ in itertools.chain(sp.aside, sp.reserved):
                sp.lanes[lane_key].front = None
            sp.aside.clear()
            sp.reserved.clear()
            self._leases_ended(ended)
            sp.active.clear()
            sp.ready = 0
            self._delete_prefix(sp.item_prefix)
            sp.dirty.update(sp.lanes)
            self._compactor.deleted = COMPACT_EVERY
            self._maybe_compact()
            if self._writers:
                self._writable.notify_all()

    def _delete_prefix(self, prefix: bytes, chunk: int = 10_000) -> None:
        while True:
            batch = [k for k, _ in self._store.scan(prefix=prefix, limit=chunk)]
            if not batch:
                return
            self._store.write((), batch)

    # -- queue.Queue's task accounting -----------------------------------------
    def task_done(self, ns: bytes) -> None:
        """Mark one item of ``ns`` done; ``ValueError`` when none is unfinished."""
        with self._lock, self._interrupts:
            self._check()
            sp = self._space(ns)
            if sp.unfinished <= 0:
                raise ValueError("task_done() called too many times")
            sp.unfinished -= 1
            if sp.unfinished == 0:
                self._all_done.notify_all()

    def join(self, ns: bytes, *, timeout: Optional[float] = None) -> None:
        """Wait until every item put was marked done; ``Empty`` after ``timeout``
        (a holder serves a client's join in slices, to notice the client leaving)."""
        with self._lock, self._interrupts:
            self._check()
            sp = self._space(ns)
            while sp.unfinished:
                if not self._all_done.wait(timeout) and sp.unfinished:
                    raise Empty(f"{self.path}: {sp.unfinished} items not done yet")
                self._check()

    # -- durability ------------------------------------------------------------
    def sync(self) -> None:
        """Make everything written so far survive power loss.

        Group commit: one thread at a time fsyncs, outside the lock, and each fsync
        covers every write that finished before it started, so concurrent writers share
        it (LevelDB alone would not: a sync write queues behind each plain write). The
        store fsyncs LevelDB's log files itself (see :meth:`Store.sync`), so writers go
        on beside it and a log switch cannot leave a write out. Raises ``Closed`` when
        closed, ``DiskQueueError`` when the fsync fails.
        """
        with self._lock, self._interrupts:
            self._check()
            target = self._sync_started + 1
            while self._sync_done < target:
                if self._sync_running:
                    self._synced.wait()
                    self._check()
                    continue
                # Everything from here is undone in the finally, wherever a signal
                # handler's exception comes (close() waits while _sync_running).
                try:
                    self._sync_running = True
                    self._sync_started += 1
                    generation = self._sync_started
                    self._lock.release()
                    self._store.sync()
                finally:
                    if not self._lock._is_owned():
                        self._lock.acquire()
                    self._sync_running = False
                    self._synced.notify_all()
                    self._idle.notify_all()
                    if self.closed:
                        self._close_store_if_idle()
                self._sync_done = generation

    # -- closing ---------------------------------------------------------------
    def close(self) -> None:
        """Wake every waiter (they raise ``Closed``), wait for the calls working outside
        the lock, compact what was consumed, and close the database. Idempotent."""
        # A signal handler's exception (Ctrl-C) may end this call in any step: every
        # waiter is told all the same, and the store is closed, here or by the last call
        # still using it (else LevelDB and the directory's lock stayed held until the
        # process exited, and its next open of the directory was Locked by itself).
        with self._lock, self._interrupts:
            self.closed = True
            try:
                self._tell_closed()
                while self._outside or self._sync_running:
                    self._idle.wait()
                if not (self._store.closed or self.forked):
                    self._compactor.before_close()
            except BaseException:
                self._tell_closed()
                raise
            finally:
                self._close_store_if_idle()

    def _tell_closed(self) -> None:
        """Wake every waiter: they find the engine closed (lock held)."""
        self._readable.notify_all()
        if self._watchers:
            self._tell(0)
        self._writable.notify_all()
        self._all_done.notify_all()
        self._synced.notify_all()

    def _close_store_if_idle(self) -> None:
        """Close the store of a closed engine once nothing uses it (lock held)."""
        if not (self._store.closed or self.forked or self._outside or self._sync_running):
            self._store.close()  # (when an exception ends it, the next close finishes it)

    # -- compaction (see compaction.py) -----------------------------------------
    def _count_deletes(self, sp: Space, lanes: Collection[bytes], n: int,
                       from_tail: bool = False) -> None:
        """Note ``n`` deleted items of ``lanes``; compact when enough have piled up."""
        sp.dirty.update(lanes)
        if from_tail:
            sp.dirty_top.update(lanes)
        compactor = self._compactor
        compactor.deleted += n
        if compactor.deleted >= COMPACT_EVERY:
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        """Compact the consumed ranges in the background (called with the lock held)."""
        self._compactor.start()

    # The compactor's thread counts itself in and out of the store, not the thread that
    # starts it: that one may be the main thread, and a signal handler's exception there
    # (even from the wait inside Thread.start()) could come between starting the thread
    # and counting it, and leave close() waiting for ever.
    def _compacting(self) -> bool:
        """The compactor's thread may use the store now (False: the engine closed)."""
        with self._lock:
            if self.closed or self.forked:
                return False
            self._outside += 1
            return True

    def _compacted(self) -> None:
        """The compactor's thread is done with the store."""
        with self._lock:
            self._outside -= 1
            self._idle.notify_all()
            if self.closed:
                self._close_store_if_idle()

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
        return ranges

    # -- waiting ---------------------------------------------------------------
    def _await_ready(self, sp: Space, lane: Optional[bytes], block: bool,
                     timeout: Optional[float]) -> None:
        """Return once an item is ready in ``sp`` (or ``lane``); ``Empty`` otherwise."""
        end = deadline(block, timeout)
        while True:
            if self._leases:
                self._expire_leases()
            if (sp.ready if lane is None else (lane in sp.active)):
                return
            self._wait_readable(block, end, "empty", (sp.ns, lane))

    def _wait_readable(self, block: bool, end: Optional[float], what: str,
                       want: object) -> None:
        """Wait (lock held) for a push or the next lease expiry; Empty when out of time.
        ``want``: what the caller waits for (see ``_wants``)."""
        if not block:
            raise Empty(f"{self.path}: {what}")
        now = time.monotonic()
        remaining = None if end is None else end - now
        if remaining is not None and remaining <= 0:
            raise Empty(f"{self.path}: {what}, after waiting")
        if self._leases:
            until_lease = max(self._leases[0][0] - now, 0.0)
            remaining = until_lease if remaining is None else min(remaining, until_lease)
        self._sleep(False, remaining, want)
        self._check()

    def _sleep(self, room: bool, timeout: Optional[float], want: object = None) -> bool:
        """Wait (lock held) for a push (``room``: for room under maxsize) or ``timeout``;
        True when woken. The waiters are counted so that writers notify only when
        someone waits, and ``want`` (what the caller waits for: None, any change) is
        counted in ``_wants``."""
        wants = self._wants[room]
        wants[want] = wants.get(want, 0) + 1
        try:
            if room:
                self._writers += 1
                try:
                    return self._writable.wait(timeout)
                finally:
                    self._writers -= 1
            self._readers += 1
            try:
                return self._readable.wait(timeout)
            finally:
                self._readers -= 1
        finally:
            if wants[want] == 1:
                del wants[want]
            else:
                wants[want] -= 1

    # -- taking (shared by take.py and holds.py) ---------------------------------
    def _pick(self, sp: Space, n: int, lane: Optional[bytes], desc: bool,
              from_tail: bool) -> list[tuple[bytes, int]]:
        """``(lane, seq)`` of the next ``n`` ready items in dequeue order."""
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

    def _apply_take(self, sp: Space, picked: list[tuple[bytes, int]],
                    moved: list[tuple[bytes, Lane]], entries: list[Entry],
                    lease: Optional[float], owner: Any = None) -> None:
        """Apply a written take in memory: pointers, put-aside items, reservations."""
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
                    ends = time.monotonic() + lease
                    if self._watchers and (not self._leases or ends < self._leases[0][0]):
                        self._tell(0)  # the next lease to end is a new one: see watches.py
                    heapq.heappush(self._leases, (ends, next(self._lease_ids), sp.ns,
                                                  lane_key, seq, entry[4]))
                if owner is not None:
                    self._own(owner, (sp.ns, lane_key, seq, entry[4]))
        sp.ready -= len(picked)
        for lane_key in {lane_key for lane_key, _ in picked}:
            sp.recount(lane_key, sp.lanes[lane_key])

    # -- reservations (shared by leases.py, holds.py and inherited.py) -----------
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

    def _expire_leases(self) -> None:
        now = time.monotonic()
        while self._leases and self._leases[0][0] <= now:
            _, _, ns, lane, seq, attempts = heapq.heappop(self._leases)
            sp = self._spaces[ns]
            if sp.reserved.get((lane, seq)) != attempts:
                continue  # acked or nacked meanwhile
            self._return_to_front(sp, lane, seq, attempts)
            logs.later(log, logging.INFO, "lease of item %d expired; it is back at the front",
                       seq)

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

    def _return_to_front(self, sp: Space, lane: bytes, seq: int, attempts: int) -> None:
        del sp.reserved[(lane, seq)]
        ln = sp.lanes[lane]
        ln.add_front(seq)
        sp.aside[(lane, seq)] = attempts
        sp.ready += 1
        sp.recount(lane, ln)
        self._ready(1)

    # -- telling waiters (threads and watchers) ---------------------------------
    def _ready(self, n: int) -> None:
        """``n`` items became ready (lock held): wake as many waiting threads and tell
        the watchers."""
        if self._readers:
            if len(self._wants[False]) == 1:
                self._readable.notify(n)
            else:
                self._readable.notify_all()
        if self._watchers:
            self._tell(n)

    def _room(self, n: int) -> None:
        """``n`` items were taken (lock held): wake as many threads waiting for room (all
        of them when they wait for different queues)."""
        if len(self._wants[True]) == 1:
            self._writable.notify(n)
        else:
            self._writable.notify_all()

    def _tell(self, n: int) -> None:
        """Call every watcher with ``n`` (lock held; see watches.py). A watcher that
        raises is logged: the change it was told of has been made all the same."""
        for watcher in self._watchers:
            try:
                watcher(n)
            except Exception:
                logs.later(log, logging.ERROR, "%s: a watcher failed", self.path,
                           exc_info=True)

    def _handed_out(self, holder: Holder, key: tuple[bytes, bytes, int],
                    data: Optional[bytes], hold: int = -1) -> Optional[bool]:
        """Whether client ``holder`` noted that it handed out its take of ``data`` at
        ``key`` (``hold``: a pop from the top, held so; see handed.py); None when its
        notes cannot be read now (ask again later)."""
        if data is None:
            return False
        notes = self._notes_of(holder)
        return None if notes is None else handed.note(key, data, hold) in notes

    def _notes_of(self, holder: Holder) -> Optional[frozenset[bytes]]:
        """Client ``holder``'s notes, read once (None, not kept, when unreadable now)."""
        notes = self._handed.get(holder)
        if notes is None:
            notes = handed.read(self.path, holder)
            if notes is not None:
                self._handed[holder] = notes
        return notes

    # -- declared here, kept by the part they belong to --------------------------
    # (No ABCMeta: after fork() an Engine becomes a client by assigning ``__class__``,
    # which needs the layout of a plain class; mypy checks these all the same.)
    @abstractmethod
    def _commit_pushes(self, works: list[tuple[bytes, list[tuple[bytes, bytes]],
                                               Optional[Receipt]]]
                       ) -> list[list[tuple[int, bytes]]]:
        """Write the group commit's pushes in one synced batch (push.py)."""

    @abstractmethod
    def _load_aside(self, sp: Space, lane: bytes, ln: Lane, seq: int, value: bytes,
                    living: dict[Holder, bool]) -> None:
        """At open: take in one aside record (inherited.py)."""

    @abstractmethod
    def _after_interrupt(self, exc: BaseException) -> None:
        """A signal handler's exception left a call: read the pointers back
        (interrupted.py)."""

    @abstractmethod
    def _restore_tops(self) -> None:
        """At open: put back on top what a dead holder held for clients (holds.py)."""

    @abstractmethod
    def _push_back(self, held: list[tuple[bytes, bytes, int]]) -> None:
        """Push the items of held records ``(ns, lane, hold)`` back on top (holds.py)."""
