"""The owner-side engine: one per directory per process, holding every state change.

Handles (Queue, Stack, PriorityQueue, PrefixQueue, the task layer) call these methods
with raw bytes; a socket server can expose the same methods unchanged. Every mutation
is computed first, written as one atomic batch together with the pointers it moves,
and only then applied in memory, so a failed write leaves the structure unchanged.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Optional

import msgpack

from ..errors import (
    Closed,
    Corrupted,
    DiskQueueError,
    Empty,
    IncompatibleType,
    Locked,
    OutOfBounds,
)
from . import keys
from .compaction import COMPACT_EVERY, Compaction
from .groupcommit import GroupCommit
from .holds import Holds
from .inherited import Inheritance
from .lanes import Lane, Space
from .leases import Holdings, Reservations
from .push import Pushes
from .records import Records
from .store import Store
from .take import Takes

log = logging.getLogger("diskqueue.engine")

FORMAT_VERSION = 1
# What a user opens for each structure kind a directory records, for messages
KIND_NAMES = {"queue": "Queue or Stack", "priority": "PriorityQueue",
              "prefix": "PrefixQueue", "tasks": "TaskQueue"}
# (lane, seq, key, data, attempts): what reads hand back to handles
Entry = tuple[bytes, int, bytes, bytes, int]


_registry: dict[str, Any] = {}
_registry_lock = threading.Lock()


# Stores inherited across fork(): kept alive forever, because freeing one in the child
# would run LevelDB's destructor, which waits for a background thread that only the
# parent has.
_orphans: list[Store] = []


def orphan(engine: Engine) -> None:
    """Forget an engine inherited across fork() without ever touching its LevelDB, and
    let go of the child's copies of its server's sockets: the listening one and the
    server ends of its clients' connections (else, once the parent dies, those clients
    and this child would wait on sockets that nobody serves)."""
    # forget_after_fork() closes the copies without shutting anything down.
    forget_server = getattr(engine._server, "forget_after_fork", None)
    if forget_server is not None:
        forget_server()
    engine.forked = True
    _orphans.append(engine._store)


def _before_fork() -> None:
    _registry_lock.acquire()


def _after_fork_in_parent() -> None:
    _registry_lock.release()


def _after_fork_in_child() -> None:
    """Handles inherited across fork() become clients of the parent (or its successor).

    The child lets go of its copies of the parent's sockets: those its server serves on
    (see ``orphan``), and the client ends of the parent's own connections.
    """
    from ..sharing.client import CONNECT_TIMEOUT, RemoteEngine

    try:
        for engine in _registry.values():
            if isinstance(engine, Engine):
                orphan(engine)
                engine.__class__ = RemoteEngine  # type: ignore[assignment]
                engine.forked = False
                engine.closed = False
                engine.connect_timeout = getattr(engine, "connect_timeout", CONNECT_TIMEOUT)  # type: ignore[attr-defined]
                RemoteEngine._reset(engine)  # type: ignore[arg-type]
            else:
                engine._reset_after_fork()
    finally:
        _registry_lock.release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def forget(engine: Any) -> bool:
    """Drop one reference to an engine (owner or client); True when it was the last."""
    path: str = engine.path
    with _registry_lock:
        engine.refs -= 1
        if engine.refs > 0:
            return False
        if _registry.get(path) is engine:
            del _registry[path]
        return True


def check_connect_timeout(value: Any) -> float:
    """A ``connect_timeout=`` argument as seconds, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"connect_timeout must be a number of seconds, not {type(value).__name__}")
    if not 0 < value < float("inf"):  # NaN fails this too
        raise ValueError(f"connect_timeout must be a finite number of seconds > 0, not {value}")
    return float(value)


def acquire(path: str, *, connect_timeout: float = 10.0) -> Any:
    """Return this process's engine for ``path``: the owner's, or a client of it.

    A holder that does not let this process in within ``connect_timeout`` seconds
    makes it ``Locked``. The handles of one path in one process share the engine, and
    with it the ``connect_timeout`` of the first one opened.
    """
    from ..sharing.client import RemoteEngine

    connect_timeout = check_connect_timeout(connect_timeout)
    with _registry_lock:
        engine: Any = _registry.get(path)
        if engine is None or engine.closed:
            try:
                engine = Engine(path)
            except Locked:
                engine = RemoteEngine(path, connect_timeout=connect_timeout)
            engine.connect_timeout = connect_timeout
            _registry[path] = engine
        engine.refs += 1
        return engine


class Engine(Pushes, Takes, Holds, Reservations, Records, Compaction, Inheritance):
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
        self._stale_leases = 0  # heap entries of reservations that ended before their lease
        self._deleted = 0
        # Read-ahead of the lane being drained: (key, data) of its next items, and the
        # lane whose last dequeue missed it (a second dequeue in a row fills it).
        self._ahead: deque[tuple[bytes, bytes]] = deque()
        self._ahead_lane: Optional[Lane] = None
        self._owned: dict[Any, Holdings] = {}
        self._tops: dict[int, tuple[bytes, bytes]] = {}  # pops held for clients
        self._top_ids = itertools.count(1)
        self._inherited = {}  # what live clients of the last holder hold: see inherited.py
        self._inherited_tops = {}
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
        from ..sharing.server import Server

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
        self._restore_tops()

    def _parse_pointers(self) -> None:
        for key, value in self._store.iter_prefix(keys.POINTER):
            sp, lane = self._split(key, 0)
            ln = sp.lane(lane)
            ln.head, ln.tail = keys.POINTERS.unpack(value)
        living: dict[tuple[int, int], bool] = {}
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
                held, wanted = (KIND_NAMES.get(k, k) for k in (stored.decode(), kind))
                raise IncompatibleType(
                    f"{self.path} holds a {held}, not a {wanted}: open it as a {held}"
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
            self._ahead.clear()
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

    def join(self, ns: bytes, timeout: Optional[float] = None) -> None:
        """Wait until every item put was marked done; ``Empty`` after ``timeout``
        (a holder serves a client's join in slices, to notice the client leaving)."""
        with self._lock:
            self._check()
            sp = self._space(ns)
            while sp.unfinished:
                if not self._all_done.wait(timeout) and sp.unfinished:
                    raise Empty(f"{self.path}: {sp.unfinished} items not done yet")
                self._check()

    def sync(self) -> None:
        """Make everything written so far survive power loss.

        Group commit: one thread at a time fsyncs, outside the lock, and each fsync
        covers every write that finished before it started, so concurrent writers share
        it (LevelDB alone would not: a sync write queues behind each plain write). The
        store fsyncs LevelDB's log files itself (see :meth:`Store.sync`), so writers go
        on beside it and a log switch cannot leave a write out.
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
        if forget(self):
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
                self._compact_before_close()
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
