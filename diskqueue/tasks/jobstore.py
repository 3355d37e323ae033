"""``JobStore``: a task directory's engine and its job records, for every task module.

The one place that opens the engine of a task directory (lazily, on first use), makes
job ids, reads, writes and waits on job records, and pages through record namespaces.
:class:`~diskqueue.tasks.TaskQueue` is the public entry point on top of it; jobs, dead
letters, stats, the worker and its scheduler use the store instead of reaching into the
TaskQueue.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional, Protocol

from .._checks import check_path
from ..engine.api import EngineAPI
from ..errors import Closed
from ..sharing import registry as engine_mod
from . import layout as R
from .directory import Shared, shared
from .payload import Payload

# The engine (or its client in another process than the owner's)
Engine = EngineAPI
PAGE = 5000  # records per scan call when paging through a whole namespace
# Counts this process's forks: a child gets a new id space without a getpid() per job.
_forks = [0]


def _forked() -> None:
    _forks[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class HasStore(Protocol):
    """Anything that hands out its :class:`JobStore` (a TaskQueue, the worker's parts)."""

    @property
    def store(self) -> JobStore:
        """The job store of the task directory."""


class JobStore:
    """A task directory: its engine, opened on first use, and its job records.

    ``clock`` gives epoch seconds for every time written to a record; ``sync`` makes
    each write that enqueues or finishes a job survive power loss; ``connect_timeout``
    bounds the wait for another process holding the directory. Raises TypeError or
    ValueError for a bad ``path`` or ``connect_timeout``.
    """

    def __init__(self, path: Any, *, clock: Callable[[], float], sync: bool,
                 connect_timeout: float) -> None:
        self.path: str = check_path(path)
        self.connect_timeout = engine_mod.check_connect_timeout(connect_timeout)
        self.clock = clock
        self.sync = sync
        self.payload = Payload()  # the codec of arguments and results
        self._eng: Optional[Engine] = None
        self._closed = False
        self._open_lock = threading.Lock()
        # (the format of an id with its random prefix, the counter, the _forks count it
        # was made in): read as one tuple, so a thread never pairs one space's prefix with
        # another's counter while two threads make the first one at once
        self._id_space: tuple[str, Iterator[int], int] = ("", iter(()), -1)

    # -- the directory ---------------------------------------------------------
    @property
    def opened(self) -> bool:
        """True once the engine was opened (and not closed since)."""
        return self._eng is not None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def set_path(self, path: Any) -> None:
        """Point the store at another directory; raises RuntimeError once it is open."""
        if self._eng is not None:
            raise RuntimeError(f"{self.path} is already open; set_path() comes before use")
        self.path = check_path(path)

    def engine(self) -> Engine:
        """The directory's engine, opened (and marked a task directory) on first use.

        Raises ``Closed`` after :meth:`close`, and what opening the directory raises
        (a directory of another kind, a holder that does not answer in time...).
        """
        eng = self._eng
        if eng is not None:
            return eng
        with self._open_lock:
            if self._closed:
                raise Closed(f"task queue {self.path} is closed")
            if self._eng is None:
                eng = engine_mod.acquire(self.path, connect_timeout=self.connect_timeout)
                try:
                    eng.ensure_kind("tasks", ())
                    if eng.get_record(R.NS_META, b"format") is None:
                        eng.write_records([(R.NS_META, b"format", R.FORMAT)])
                except BaseException:
                    eng.release()
                    raise
                self._eng = eng
            return self._eng

    def close(self) -> None:
        """Release the engine; later use raises ``Closed``. Closing twice is a no-op."""
        with self._open_lock:
            self._closed = True
            eng, self._eng = self._eng, None
        if eng is not None:
            eng.release()

    @property
    def shared(self) -> Shared:
        """What every TaskQueue and worker of this process shares for the directory."""
        return shared(self.path)

    # -- job records -----------------------------------------------------------
    def new_id(self) -> str:
        """A new job id: unique across processes (a random prefix per process)."""
        form, ids, fork = self._id_space
        if fork != _forks[0]:
            form, ids, fork = self._new_id_space()
        return form % next(ids)

    def new_ids(self, n: int) -> list[str]:
        """``n`` new job ids, as :meth:`new_id` makes them (unique, not always in a row:
        other threads may take ids meanwhile)."""
        form, ids, fork = self._id_space
        if fork != _forks[0]:
            form, ids, fork = self._new_id_space()
        return [form % i for i in itertools.islice(ids, n)]

    def _new_id_space(self) -> tuple[str, Iterator[int], int]:
        """A new process (or first use): a fresh random prefix, counting from 1. Two
        threads doing this at once each use their own (both prefixes are random)."""
        # % formats an id faster than an f-string does
        space = (os.urandom(5).hex() + "%06x", itertools.count(1), _forks[0])
        self._id_space = space
        return space

    def read(self, job_id: str | bytes) -> Optional[dict[str, Any]]:
        """The job's record as stored now, or None when there is none."""
        jid = job_id.encode() if isinstance(job_id, str) else job_id
        data = self.engine().get_record(R.NS_JOBS, jid)
        return None if data is None else R.unpack(data)

    def save(self, record: dict[str, Any]) -> None:
        """Store a job's record as it is (raises TypeError for a value msgpack cannot
        hold; nothing is written then)."""
        self.engine().write_records([(R.NS_JOBS, record["id"].encode(), R.pack(record))])

    def write(self, ops: R.Ops) -> None:
        """Write record ops in one batch, synced when the store is ``sync``."""
        eng = self.engine()
        eng.write_records(ops)
        if self.sync:
            eng.sync()

    def unique_guard(self, record: dict[str, Any]) -> Optional[tuple[bytes, Optional[bytes]]]:
        """The job's ``unique_key`` guard and the id of the job holding it now (None:
        free); None when the job has no ``unique_key``."""
        key = record.get("unique")
        if key is None:
            return None
        guard = key.encode("utf-8")
        holder = self.engine().get_record(R.NS_UNIQUE, guard)
        return guard, None if holder is None else bytes(holder)

    def wait_finished(self, job_id: str, end: Optional[float]) -> Optional[dict[str, Any]]:
        """The job's record once it is finished, or as it is when ``time.monotonic()``
        passes ``end`` (None: wait for ever); None when there is no such job."""
        sh = self.shared
        with sh.finished:
            sh.waiters += 1
            try:
                while True:
                    record = self.read(job_id)
                    if record is None or record["state"] in R.FINISHED:
                        return record
                    left = None if end is None else end - time.monotonic()
                    if left is not None and left <= 0:
                        return record
                    # woken by a worker of this process; the cap covers other processes
                    sh.finished.wait(0.2 if left is None else min(left, 0.2))
            finally:
                sh.waiters -= 1

    # -- paged scans -----------------------------------------------------------
    def pages(self, ns: bytes, *, start: bytes = b"", stop: Optional[bytes] = None,
              size: int = PAGE) -> Iterator[list[tuple[bytes, bytes]]]:
        """The records of ``ns`` with ``start <= key < stop``, a page of up to ``size``
        at a time. Each page is read when asked for, after the last key of the one
        before, so the caller may delete what it was given before asking for more."""
        eng = self.engine()
        while True:
            rows = eng.scan_records(ns, start=start, stop=stop, limit=size)
            page = [(bytes(key), bytes(value)) for key, value in rows]
            if page:
                yield page
            if len(page) < size:
                return
            start = page[-1][0] + b"\x00"

    def scan(self, ns: bytes, *, start: bytes = b"", stop: Optional[bytes] = None
             ) -> Iterator[tuple[bytes, bytes]]:
        """Every record of ``ns`` with ``start <= key < stop``, in key order, paged."""
        for page in self.pages(ns, start=start, stop=stop):
            yield from page

    def last_tick(self, name: str) -> Optional[float]:
        """When the periodic task ``name`` last ticked (epoch seconds), or None."""
        prefix = name.encode("utf-8") + b"\x00"
        rows = list(self.scan(R.NS_TICK, start=prefix, stop=prefix[:-1] + b"\x01"))
        return R.due_of(rows[-1][0][len(prefix):]) if rows else None

    def first(self, ns: bytes) -> Optional[tuple[bytes, bytes]]:
        """The first record of ``ns``, or None when it has none."""
        rows = self.engine().scan_records(ns, limit=1)
        return (bytes(rows[0][0]), bytes(rows[0][1])) if rows else None
