"""The owner-side engine: one per directory per process, holding every state change.

Handles (Queue, Stack, PriorityQueue, PrefixQueue, the task layer) call these methods
with raw bytes; a socket server can expose the same methods unchanged. Every mutation
is computed first, written as one atomic batch together with the pointers it moves,
and only then applied in memory, so a failed write leaves the structure unchanged.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Iterable
from typing import Any, Optional

import msgpack

from . import keys
from .errors import (
    Closed,
    Corrupted,
    DiskQueueError,
    Empty,
    Full,
    IncompatibleType,
    Locked,
    OutOfBounds,
)
from .groupcommit import GroupCommit
from .lanes import Lane, Space
from .reservations import RecordOps, Reservations
from .store import Store

log = logging.getLogger("diskqueue.engine")

FORMAT_VERSION = 1
COMPACT_EVERY = 50_000  # deletes between compactions of the consumed key ranges
# (lane, seq, key, data, attempts): what reads hand back to handles
Entry = tuple[bytes, int, bytes, bytes, int]


_pack = keys.POINTERS.pack
_registry: dict[str, Any] = {}
_registry_lock = threading.Lock()


# Stores inherited across fork(): kept alive forever, because freeing one in the child
# would run LevelDB's destructor, which waits for a background thread that only the
# parent has.
_orphans: list[Store] = []


def orphan(engine: Engine) -> None:
    """Forget an engine inherited across fork() without ever touching its LevelDB."""
    engine.forked = True
    _orphans.append(engine._store)


def _before_fork() -> None:
    _registry_lock.acquire()


def _after_fork_in_parent() -> None:
    _registry_lock.release()


def _after_fork_in_child() -> None:
    """Handles inherited across fork() become clients of the parent (or its successor)."""
    from .remote import RemoteEngine

    try:
        for engine in _registry.values():
            if isinstance(engine, Engine):
                orphan(engine)
                engine.__class__ = RemoteEngine  # type: ignore[assignment]
                engine.forked = False
                engine.closed = False
                RemoteEngine._reset(engine)  # type: ignore[arg-type]
            else:
                engine._reset_after_fork()
    finally:
        _registry_lock.release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def acquire(path: str) -> Any:
    """Return this process's engine for ``path``: the owner's, or a client of it."""
    from .remote import RemoteEngine

    with _registry_lock:
        engine = _registry.get(path)
        if engine is None or engine.closed:
            try:
                engine = Engine(path)
            except Locked:
                engine = RemoteEngine(path)
            _registry[path] = engine
        engine.refs += 1
        return engine


def _deadline(block: bool, timeout: Optional[float]) -> Optional[float]:
    if not block or timeout is None:
        return None
    return time.monotonic() + timeout


class Engine(Reservations):
    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.refs = 0
        self.closed = False
        self.forked = False
        self._store = Store(path)
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)
        self._writable = threading.Condition(self._lock)
        self._all_done = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._outside = 0  # calls using the store outside the lock (sync, compaction)
        self._readers = 0  # threads waiting for an item (so notify only when someone waits)
        self._writers = 0  # threads waiting for room under maxsize
        self._synced = threading.Condition(self._lock)
        self._sync_started = self._sync_done = 0  # fsync generations (group commit)
        self._sync_running = False
        self._group = GroupCommit(self._commit_pushes)
        self._spaces: dict[bytes, Space] = {}
        self._leases: list[tuple[float, int, bytes, bytes, int, int]] = []
        self._lease_ids = itertools.count()
        self._deleted = 0
        self._owned: dict[Any, list[tuple[bytes, bytes, int, int]]] = {}
        self._compactor: threading.Thread | None = None
        self._server: Any = None
        try:
            self._load()
        except BaseException:
            self._store.close()
            raise
        self._serve()

    role = "owner"

    def _serve(self) -> None:
        """Let other processes in through a socket in the directory."""
        from .server import Server

        try:
            self._server = Server(self)
        except (OSError, DiskQueueError) as exc:
            log.warning("not serving %s to other processes: %s", self.path, exc)

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

    def _parse_pointers(self) -> None:
        for key, value in self._store.iter_prefix(keys.POINTER):
            sp, lane = self._split(key, 0)
            head, tail = keys.POINTERS.unpack(value)
            sp.lanes[lane] = Lane(head, tail)
        for key, value in self._store.iter_prefix(keys.ASIDE):
            sp, lane = self._split(key, 8)
            seq = int.from_bytes(key[-8:], "big")
            ln = sp.lane(lane)
            sp.aside[(lane, seq)] = msgpack.unpackb(value)
            if seq < ln.head:  # reserved by a process that is gone, or nacked: the front
                ln.add_front(seq)
        for sp in self._spaces.values():
            for lane, ln in sp.lanes.items():
                sp.ready += ln.ready
                sp.recount(lane, ln)
            sp.unfinished = sp.ready

    def _split(self, key: bytes, tail: int) -> tuple[Space, bytes]:
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
        """Record the structure kind on first use; refuse a directory of another kind."""
        with self._lock:
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
                raise IncompatibleType(
                    f"{self.path} holds a {stored.decode()} structure, not a {kind}; "
                    "open it with the matching class"
                )

    def _check(self) -> None:
        if self.closed or self.forked:
            self._refuse()

    def _refuse(self) -> None:
        if self.forked:
            raise DiskQueueError(
                f"{self.path} was opened before fork(); open it again in this process"
            )
        raise Closed(f"{self.path} is closed")

    # -- enqueue ---------------------------------------------------------------
    def _wait_room(self, sp: Space, n: int, maxsize: int, block: bool,
                   timeout: Optional[float]) -> None:
        if maxsize <= 0 or sp.ready + n <= maxsize:
            return
        if n > maxsize or not block:
            raise Full(f"{self.path} holds {sp.ready} items; maxsize is {maxsize}")
        end = _deadline(block, timeout)
        while sp.ready + n > maxsize:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise Full(f"{self.path} stayed full for {timeout} s")
            self._writers += 1
            try:
                self._writable.wait(remaining)
            finally:
                self._writers -= 1
            self._check()

    def push_one(self, ns: bytes, lane: bytes, data: bytes, maxsize: int = 0,
                 block: bool = False, timeout: Optional[float] = None) -> tuple[int, bytes]:
        """Append one item to a lane; return its seq and key."""
        with self._lock:
            if self.closed or self.forked:
                self._refuse()
            sp = self._spaces.get(ns) or self._space(ns)
            if maxsize:
                self._wait_room(sp, 1, maxsize, block, timeout)
            ln = sp.lanes.get(lane) or sp.lane(lane)
            seq = ln.tail
            key = sp.item_prefix + lane + seq.to_bytes(8, "big")
            self._store.write2(key, data, sp.pointer_prefix + lane, _pack(ln.head, seq + 1))
            ln.tail = seq + 1
            sp.ready += 1
            sp.unfinished += 1
            if seq == ln.head and not ln.front:  # the lane was empty
                sp.active.add(lane)
            if self._readers:
                self._readable.notify()
            return seq, key

    def push(self, ns: bytes, entries: list[tuple[bytes, bytes]], maxsize: int = 0,
             block: bool = False, timeout: Optional[float] = None,
             records: RecordOps = ()) -> list[tuple[int, bytes]]:
        """Append ``(lane, data)`` entries atomically: all of them land, or none.

        ``records`` are record writes (see :meth:`write_records`) made in the same batch.
        """
        with self._lock:
            self._check()
            sp = self._space(ns)
            if maxsize:
                self._wait_room(sp, len(entries), maxsize, block, timeout)
            tails: dict[bytes, int] = {}
            puts: list[tuple[bytes, bytes]] = []
            out = self._plan_push(sp, entries, tails, puts)
            deletes = self._plan_records(records, puts)
            self._store.write(puts + self._tail_pointers(sp, tails), deletes)
            self._apply_push(sp, tails, len(entries))
            return out

    def push_run(self, ns: bytes, lane: bytes, datas: list[bytes], maxsize: int = 0,
                 block: bool = False, timeout: Optional[float] = None) -> int:
        """Append items to one lane atomically; return the first seq (the rest follow)."""
        with self._lock:
            self._check()
            sp = self._space(ns)
            if maxsize:
                self._wait_room(sp, len(datas), maxsize, block, timeout)
            ln = sp.lane(lane)
            first = ln.tail
            prefix = sp.item_prefix + lane
            puts = [(prefix + seq.to_bytes(8, "big"), data)
                    for seq, data in zip(range(first, first + len(datas)), datas, strict=True)]
            puts.append((sp.pointer_prefix + lane, _pack(ln.head, first + len(datas))))
            self._store.write(puts)
            self._apply_push(sp, {lane: first + len(datas)}, len(datas))
            return first

    def push_unless(self, ns: bytes, entries: list[tuple[bytes, bytes]], guard: tuple[bytes, bytes],
                    records: RecordOps = ()) -> Optional[bytes]:
        """``push`` unless the record ``guard`` (ns, key) exists: then return its value.

        The check and the push happen under one lock, so two callers racing with the
        same guard never both push (the task layer's ``unique_key``).
        """
        with self._lock:
            self._check()
            existing = self._store.get(keys.RECORD + keys.ns_bytes(guard[0]) + guard[1])
            if existing is not None:
                return existing
            sp = self._space(ns)
            tails: dict[bytes, int] = {}
            puts: list[tuple[bytes, bytes]] = []
            self._plan_push(sp, entries, tails, puts)
            deletes = self._plan_records(records, puts)
            self._store.write(puts + self._tail_pointers(sp, tails), deletes)
            self._apply_push(sp, tails, len(entries))
            return None

    def push_durable(self, ns: bytes, entries: list[tuple[bytes, bytes]]
                     ) -> list[tuple[int, bytes]]:
        """``push`` that survives power loss; concurrent callers share one fsync."""
        return self._group.submit((ns, entries))  # type: ignore[no-any-return]

    def _commit_pushes(self, works: list[tuple[bytes, list[tuple[bytes, bytes]]]]
                       ) -> list[list[tuple[int, bytes]]]:
        with self._lock:
            self._check()
            tails: dict[bytes, dict[bytes, int]] = {}
            puts: list[tuple[bytes, bytes]] = []
            results = []
            for ns, entries in works:
                sp = self._space(ns)
                results.append(self._plan_push(sp, entries, tails.setdefault(ns, {}), puts))
            for ns, lane_tails in tails.items():
                puts.extend(self._tail_pointers(self._spaces[ns], lane_tails))
            self._store.write(puts, sync=True)
            for ns, entries in works:
                self._apply_push(self._spaces[ns], {}, len(entries))
            for ns, lane_tails in tails.items():
                self._apply_push(self._spaces[ns], lane_tails, 0)
            return results

    @staticmethod
    def _plan_push(sp: Space, entries: list[tuple[bytes, bytes]], tails: dict[bytes, int],
                   puts: list[tuple[bytes, bytes]]) -> list[tuple[int, bytes]]:
        """Give each entry the next seq of its lane (tracked in ``tails``), unapplied."""
        out: list[tuple[int, bytes]] = []
        for lane, data in entries:
            seq = tails.get(lane) or (sp.lanes[lane].tail if lane in sp.lanes else 1)
            tails[lane] = seq + 1
            key = sp.item_prefix + lane + seq.to_bytes(8, "big")
            puts.append((key, data))
            out.append((seq, key))
        return out

    @staticmethod
    def _tail_pointers(sp: Space, tails: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
        return [
            (sp.pointer_prefix + lane, _pack(sp.lanes[lane].head if lane in sp.lanes else 1, t))
            for lane, t in tails.items()
        ]

    def _apply_push(self, sp: Space, tails: dict[bytes, int], n: int) -> None:
        for lane, tail in tails.items():
            ln = sp.lane(lane)
            ln.tail = tail
            sp.recount(lane, ln)
        sp.ready += n
        sp.unfinished += n
        if n and self._readers:
            self._readable.notify(n)

    # -- dequeue and reserve ---------------------------------------------------
    def take(self, ns: bytes, n: int = 1, *, lane: Optional[bytes] = None, desc: bool = False,
             from_tail: bool = False, lease: Optional[float] = None, block: bool = False,
             timeout: Optional[float] = None, owner: Any = None) -> list[Entry]:
        """Remove (or, with ``lease``, reserve) up to ``n`` ready items in dequeue order.

        ``owner`` tags reservations so that :meth:`release_owner` can return them all
        (a socket connection that went away); ``lease=math.inf`` never expires.
        """
        with self._lock:
            if self.closed or self.forked:
                self._refuse()
            sp = self._spaces.get(ns) or self._space(ns)
            if self._leases or not (sp.ready if lane is None else lane in sp.active):
                self._await_ready(sp, lane, block, timeout)
            return self._take(sp, n, lane, desc, from_tail, lease, owner)

    def take_first(self, nss: list[bytes], lease: Optional[float] = None, block: bool = False,
                   timeout: Optional[float] = None, owner: Any = None) -> tuple[bytes, Entry]:
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
                        return ns, self._take(sp, 1, None, False, False, lease, owner)[0]
                remaining = None if end is None else end - time.monotonic()
                if not block or (remaining is not None and remaining <= 0):
                    raise Empty(f"{self.path}: nothing ready in {len(nss)} queues")
                if self._leases:
                    until = max(self._leases[0][0] - time.monotonic(), 0.0)
                    remaining = until if remaining is None else min(remaining, until)
                self._readers += 1
                try:
                    self._readable.wait(remaining)
                finally:
                    self._readers -= 1
                self._check()

    def pop_one(self, ns: bytes, lane: Optional[bytes], desc: bool = False,
                from_tail: bool = False, block: bool = False,
                timeout: Optional[float] = None) -> Entry:
        """``take`` of one item without a lease: the hot path of dequeue and pop."""
        with self._lock:
            if self.closed or self.forked:
                self._refuse()
            sp = self._spaces.get(ns) or self._space(ns)
            if lane is not None and not self._leases:
                entry = self._take_one(sp, lane, desc, from_tail)
                if entry is not None:
                    return entry
            if self._leases or not (sp.ready if lane is None else lane in sp.active):
                self._await_ready(sp, lane, block, timeout)
            return self._take_one(sp, lane, desc, from_tail) or self._take(
                sp, 1, lane, desc, from_tail, None
            )[0]

    def _take(self, sp: Space, n: int, lane: Optional[bytes], desc: bool, from_tail: bool,
              lease: Optional[float], owner: Any = None) -> list[Entry]:
        """The general take, with the lock held and at least one item ready."""
        if lease is None and n > 1:
            runs = self._plan_runs(sp, n, lane, desc, from_tail)
            if runs is not None:
                return self._take_runs(sp, runs, from_tail)
        picked = self._pick(sp, n, lane, desc, from_tail)
        entries: list[Entry] = []
        deletes: list[bytes] = []
        puts: list[tuple[bytes, bytes]] = []
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
                puts.append((sp.aside_key(ln_key, seq), msgpack.packb(attempts)))
                entries.append((ln_key, seq, key, data, attempts))
        moved = self._moved_pointers(sp, picked, from_tail)
        puts.extend(sp.pointer(lane_key, ln) for lane_key, ln in moved)
        self._store.write(puts, deletes)
        self._apply_take(sp, picked, moved, entries, lease, owner)
        if lease is None:
            self._count_deletes(sp, {lane_key for lane_key, _ in picked}, len(picked))
        if self._writers:
            self._writable.notify(len(picked))
        return entries

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
                   from_tail: bool) -> list[Entry]:
        """Dequeue whole runs: one range read and one batch, however many items."""
        entries: list[Entry] = []
        deletes: list[bytes] = []
        puts = []
        for lane, lo, hi in runs:
            prefix = sp.item_prefix + lane
            pairs = self._store.scan(start=prefix + lo.to_bytes(8, "big"),
                                     stop=prefix + hi.to_bytes(8, "big"))
            if len(pairs) != hi - lo:
                found = {k for k, _ in pairs}
                raise self._missing(next(prefix + s.to_bytes(8, "big") for s in range(lo, hi)
                                         if prefix + s.to_bytes(8, "big") not in found))
            if from_tail:
                pairs.reverse()
                seqs = range(hi - 1, lo - 1, -1)
            else:
                seqs = range(lo, hi)
            entries += [(lane, seq, key, data, 0)
                        for seq, (key, data) in zip(seqs, pairs, strict=True)]
            deletes += [key for key, _ in pairs]
            ln = sp.lanes[lane]
            head, tail = (ln.head, lo) if from_tail else (hi, ln.tail)
            puts.append((sp.pointer_prefix + lane, _pack(head, tail)))
        self._store.write(puts, deletes)
        for lane, lo, hi in runs:
            ln = sp.lanes[lane]
            if from_tail:
                ln.tail = lo
            else:
                ln.head = hi
            sp.recount(lane, ln)
        sp.ready -= len(entries)
        self._count_deletes(sp, [lane for lane, _, _ in runs], len(entries))
        if self._writers:
            self._writable.notify(len(entries))
        return entries

    def _take_one(self, sp: Space, lane: Optional[bytes], desc: bool,
                  from_tail: bool) -> Optional[Entry]:
        """The common dequeue: one item from a lane's run, nothing put aside before."""
        if lane is None:
            lane = sp.active[-1] if desc else sp.active[0]
        ln = sp.lanes.get(lane)
        if ln is None or ln.front or ln.head >= ln.tail:
            return None
        if from_tail:
            seq = ln.tail - 1
            head, tail = ln.head, seq
        else:
            seq = ln.head
            head, tail = seq + 1, ln.tail
        if sp.aside and (lane, seq) in sp.aside:
            return None
        key = sp.item_prefix + lane + seq.to_bytes(8, "big")
        data = self._store.pop(key, sp.pointer_prefix + lane, _pack(head, tail))
        if data is None:
            raise self._missing(key)
        ln.head = head
        ln.tail = tail
        sp.ready -= 1
        if head == tail:
            sp.active.discard(lane)
        sp.dirty.add(lane)
        self._deleted += 1
        if self._deleted >= COMPACT_EVERY:
            self._maybe_compact()
        if self._writers:
            self._writable.notify()
        return lane, seq, key, data, 0

    def _await_ready(self, sp: Space, lane: Optional[bytes], block: bool,
                     timeout: Optional[float]) -> None:
        end = _deadline(block, timeout)
        while True:
            if self._leases:
                self._expire_leases()
            if (sp.ready if lane is None else (lane in sp.active)):
                return
            if not block:
                raise Empty(f"{self.path} is empty")
            now = time.monotonic()
            remaining = None if end is None else end - now
            if remaining is not None and remaining <= 0:
                raise Empty(f"{self.path} stayed empty for {timeout} s")
            if self._leases:
                until_lease = max(self._leases[0][0] - now, 0.0)
                remaining = until_lease if remaining is None else min(remaining, until_lease)
            self._readers += 1
            try:
                self._readable.wait(remaining)
            finally:
                self._readers -= 1
            self._check()

    def _pick(self, sp: Space, n: int, lane: Optional[bytes], desc: bool,
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

    def _apply_take(self, sp: Space, picked: list[tuple[bytes, int]],
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
                    self._owned.setdefault(owner, []).append((sp.ns, lane_key, seq, entry[4]))
        sp.ready -= len(picked)
        for lane_key in {lane_key for lane_key, _ in picked}:
            sp.recount(lane_key, sp.lanes[lane_key])

    def _missing(self, key: bytes) -> DiskQueueError:
        return Corrupted(self.path, f"item {key!r} is missing")

    # -- reads -----------------------------------------------------------------
    def _emptiness(self, sp: Space, lane: Optional[bytes], what: str) -> DiskQueueError:
        empty = not sp.ready if lane is None else lane not in sp.active
        if empty:
            return Empty(f"{self.path} is empty")
        return OutOfBounds(f"{what} is outside {self.path}")

    def peek(self, ns: bytes, offset: int = 0, *, lane: Optional[bytes] = None,
             desc: bool = False, from_tail: bool = False) -> Entry:
        """The ready item ``offset`` places from the front of the dequeue order."""
        with self._lock:
            self._check()
            sp = self._space(ns)
            if self._leases:
                self._expire_leases()
            lanes = (lane,) if lane is not None else sp.lane_order(desc)
            left = offset
            for lane_key in lanes:
                ln = sp.lanes.get(lane_key)
                ready = ln.ready if ln else 0
                if left < ready:
                    return self._read(sp, lane_key, ln.at_offset(left, from_tail))  # type: ignore[union-attr]
                left -= ready
            raise self._emptiness(sp, lane, f"offset {offset}")

    def get(self, ns: bytes, lane: bytes, seq: int) -> Entry:
        with self._lock:
            self._check()
            sp = self._space(ns)
            if self._leases:
                self._expire_leases()
            ln = sp.lanes.get(lane)
            if ln is None or not ln.holds(seq):
                raise self._emptiness(sp, None, f"id {seq}")
            return self._read(sp, lane, seq)

    def _read(self, sp: Space, lane: bytes, seq: int) -> Entry:
        key = sp.item_key(lane, seq)
        data = self._store.get(key)
        if data is None:
            raise self._missing(key)
        return lane, seq, key, data, 0

    def update(self, ns: bytes, lane: bytes, seq: int, data: bytes) -> bytes:
        with self._lock:
            self._check()
            sp = self._space(ns)
            if self._leases:
                self._expire_leases()
            ln = sp.lanes.get(lane)
            if ln is None or not ln.holds(seq):
                raise self._emptiness(sp, None, f"id {seq}")
            key = sp.item_key(lane, seq)
            self._store.put(key, data)
            return key

    def length(self, ns: bytes, lane: Optional[bytes] = None) -> int:
        with self._lock:
            self._check()
            sp = self._space(ns)
            if self._leases:
                self._expire_leases()
            if lane is None:
                return sp.ready
            ln = sp.lanes.get(lane)
            return ln.ready if ln else 0

    def lanes(self, ns: bytes, desc: bool = False) -> list[bytes]:
        """Lanes holding ready items, in key order (or reversed)."""
        with self._lock:
            self._check()
            if self._leases:
                self._expire_leases()
            return list(self._space(ns).lane_order(desc))

    def scan(self, ns: bytes, *, lane: Optional[bytes] = None, desc: bool = False,
             from_tail: bool = False, after: Optional[tuple[bytes, int]] = None,
             limit: int = 256) -> list[Entry]:
        """A page of ready items in dequeue order, after a ``(lane, seq)`` cursor."""
        with self._lock:
            self._check()
            sp = self._space(ns)
            if self._leases:
                self._expire_leases()
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

    # -- records: small keyed values beside the queues ---------------------------
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

    # -- clearing --------------------------------------------------------------
    def clear(self, ns: bytes) -> None:
        """Remove every item (reserved ones too); ids keep counting."""
        with self._lock:
            self._check()
            sp = self._space(ns)
            puts = []
            for lane_key, ln in sp.lanes.items():
                if ln.ready or ln.front:
                    puts.append(sp.pointer(lane_key, Lane(ln.tail, ln.tail)))
            aside = [sp.aside_key(lane_key, seq) for lane_key, seq in
                     itertools.chain(sp.aside, sp.reserved)]
            self._store.write(puts, aside)  # from here the items are consumed keys
            for key, _ in puts:
                lane_key = key[len(sp.pointer_prefix):]
                ln = sp.lanes[lane_key]
                ln.head, ln.front = ln.tail, None
            for lane_key, _ in itertools.chain(sp.aside, sp.reserved):
                sp.lanes[lane_key].front = None
            sp.aside.clear()
            sp.reserved.clear()
            sp.active.clear()
            sp.ready = 0
            self._delete_prefix(sp.item_prefix)
            sp.dirty.update(sp.lanes)
            self._deleted = COMPACT_EVERY
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
        with self._lock:
            self._check()
            sp = self._space(ns)
            if sp.unfinished <= 0:
                raise ValueError("task_done() called too many times")
            sp.unfinished -= 1
            if sp.unfinished == 0:
                self._all_done.notify_all()

    def join(self, ns: bytes) -> None:
        with self._lock:
            self._check()
            sp = self._space(ns)
            while sp.unfinished:
                self._all_done.wait()
                self._check()

    # -- disk space ------------------------------------------------------------
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

    def sync(self) -> None:
        """Make everything written so far survive power loss.

        Group commit: one thread at a time fsyncs, outside the lock, and each fsync
        covers every write that finished before it started, so concurrent writers share
        it (LevelDB alone would not: a sync write queues behind each plain write).
        """
        with self._lock:
            self._check()
            target = self._sync_started + 1
            while self._sync_done < target:
                if self._sync_running:
                    self._synced.wait()
                    self._check()
                    continue
                self._sync_running = True
                self._sync_started += 1
                generation = self._sync_started
                self._outside += 1
                self._lock.release()
                try:
                    self._store.sync()
                finally:
                    self._lock.acquire()
                    self._outside -= 1
                    self._sync_running = False
                    self._synced.notify_all()
                    self._idle.notify_all()
                self._sync_done = generation

    # -- closing ---------------------------------------------------------------
    def release(self) -> None:
        """Drop one handle's reference; the last one closes the database."""
        with _registry_lock:
            self.refs -= 1
            if self.refs > 0:
                return
            if _registry.get(self.path) is self:
                del _registry[self.path]
        self.close()

    def close(self) -> None:
        if self._server is not None and not self.forked:
            self._server.close()
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._readable.notify_all()
            self._writable.notify_all()
            self._all_done.notify_all()
            self._synced.notify_all()
            while self._outside:
                self._idle.wait()
            if not self.forked:
                self._store.close()

    def destroy(self) -> None:
        """Close for every handle and delete the directory."""
        with _registry_lock:
            if _registry.get(self.path) is self:
                del _registry[self.path]
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def info(self) -> dict[str, Any]:
        with self._lock:
            self._check()
            return {
                ns.decode("utf-8", "replace"): {
                    "ready": sp.ready, "reserved": len(sp.reserved), "lanes": len(sp.active)
                }
                for ns, sp in self._spaces.items()
            }
