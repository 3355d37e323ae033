"""``tasks.stats()``: per-queue counts, and enqueue-to-start latency from a histogram.

Counts are stored with each job's outcome (see :class:`Counters`), so they stay exact
across crashes. Latency is kept as a histogram of ~10 % wide buckets, so p50 and p99
cost little per job and survive restarts.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, Optional

import msgpack

from ..engine.holders import running
from . import layout as R
from .jobstore import JobStore

_BASE = math.log(1.1)
COUNTS = ("done", "failed", "retried", "dead_total")


def bucket(seconds: float) -> int:
    """The histogram bucket of a latency (~10 % wide buckets from 1 µs up)."""
    return int(math.log(max(seconds, 1e-6) * 1e6) / _BASE)


def bucket_ms(index: int) -> float:
    """The middle of a bucket, in ms."""
    return 1.1 ** (index + 0.5) / 1000.0


def percentile(hist: dict[int, int], q: float) -> Optional[float]:
    """The ``q`` quantile (0 to 1) of a histogram, in ms; None when it is empty."""
    total = sum(hist.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return round(bucket_ms(index), 3)
    return round(bucket_ms(max(hist)), 3)  # pragma: no cover


def _blank() -> dict[str, Any]:
    return {"done": 0, "failed": 0, "retried": 0, "dead_total": 0, "lat": {}}


def merge(into: dict[str, Any], delta: dict[str, Any]) -> None:
    """Add the counts and the latency histogram of ``delta`` into ``into``."""
    for name in COUNTS:
        if name in delta:
            into[name] = into.get(name, 0) + delta[name]
    if "lat" in delta:
        lat = into.setdefault("lat", {})
        for index, n in delta["lat"].items():
            lat[index] = lat.get(index, 0) + n



def _split(key: bytes) -> tuple[str, str]:
    queue, _, worker = key.partition(b"\x00")
    return queue.decode("utf-8", "replace"), worker.decode("ascii", "replace")


class Counters:
    """One worker's counts and latencies, per queue.

    Each finished job writes its queue's counts in the batch that stores the job's
    outcome, under a key of its own (``queue NUL worker-id.thread``), so the counts are
    exact even after a SIGKILL; stats() adds up every worker's keys. The latency histogram is
    written beside them by the scheduler thread about twice a second and when the worker
    stops (a SIGKILL loses the samples of that last half second). A clean stop, and the
    start of any later worker once this process is gone, fold a worker's keys into the
    queue's base keys."""

    def __init__(self) -> None:
        self.worker_id = f"{os.getpid()}.{os.urandom(4).hex()}"
        self._lock = threading.Lock()
        # (thread, queue) -> its key, its counts and the Packer of its counts (a map of
        # ints packs the same as layout.pack does; the thread's own Packer spares the
        # codec's wrapping on every job)
        self._counts: dict[tuple[int, str],
                           tuple[bytes, dict[str, int], msgpack.Packer]] = {}
        self._lat: dict[tuple[int, str], dict[int, int]] = {}
        self._lat_dirty = False

    def key(self, queue: str) -> bytes:
        """This worker's stats key for ``queue``."""
        return queue.encode("utf-8") + b"\x00" + self.worker_id.encode()

    def started(self, queue: str, latency: float) -> None:
        """Count a start; each thread has its own histogram, so no lock is taken."""
        index = bucket(latency)
        key = (threading.get_ident(), queue)
        lat = self._lat.get(key)
        if lat is None:
            lat = self._lat[key] = {}
        lat[index] = lat.get(index, 0) + 1
        self._lat_dirty = True

    def counted(self, queue: str, names: tuple[str, ...],
                write: Callable[[list[tuple[bytes, bytes, Optional[bytes]]]], Any]) -> Any:
        """Count, then ``write`` the queue's counts (with the outcome, in one batch);
        returns what ``write`` returns.

        Each thread counts under a key of its own (``worker-id.thread``), so its writes
        land in the order it made them and no lock is held across the write."""
        return write([self.count(queue, names)])

    def count(self, queue: str, names: tuple[str, ...]) -> tuple[bytes, bytes, bytes]:
        """Count, and return the write of the queue's counts (for the batch that stores
        the outcome: see :meth:`counted`)."""
        slot = (threading.get_ident(), queue)
        found = self._counts.get(slot)
        if found is None:
            key = self.key(queue) + b".%x" % slot[0]
            found = self._counts[slot] = (key, dict.fromkeys(COUNTS, 0), msgpack.Packer())
        key, d, packer = found
        for name in names:
            d[name] += 1
        return (R.NS_STATS, key, packer.pack(d))

    def latency(self) -> dict[str, dict[int, int]]:
        """This worker's latency histograms, per queue (the threads' added up)."""
        out: dict[str, dict[int, int]] = {}
        for (_, queue), hist in list(self._lat.items()):
            into = out.setdefault(queue, {})
            for index, n in hist.copy().items():
                into[index] = into.get(index, 0) + n
        return out

    def flush_latency(self, store: JobStore) -> None:
        """Store this worker's latency histograms, when they changed since the last."""
        with self._lock:  # one flush at a time
            if not self._lat_dirty:
                return
            self._lat_dirty = False
            ops = [(R.NS_LAT, self.key(q), R.pack({"lat": h}))
                   for q, h in self.latency().items()]
            if ops:
                store.engine().write_records(ops)

    def fold(self, store: JobStore, lock: threading.Lock, own: bool = False) -> None:
        """Fold into each queue's base keys the keys of workers whose process is gone
        (and, with ``own``, this worker's, once it stopped cleanly)."""
        with lock:
            ops: list[tuple[bytes, bytes, Optional[bytes]]] = []
            for ns in (R.NS_STATS, R.NS_LAT):
                merged: dict[str, dict[str, Any]] = {}
                for key, value in store.scan(ns):
                    queue, worker = _split(key)
                    if not worker:
                        continue
                    wid = self.worker_id
                    mine = worker == wid or worker.startswith(wid + ".")
                    if (mine and own) or (not mine
                                          and not running(int(worker.split(".")[0]))):
                        merge(merged.setdefault(queue, {}), R.unpack(value))
                        ops.append((ns, key, None))
                for queue, delta in merged.items():
                    base = queue.encode("utf-8") + b"\x00"
                    raw = store.engine().get_record(ns, base)
                    stored = R.unpack(raw) if raw is not None else {}
                    merge(stored, delta)
                    ops.append((ns, base, R.pack(stored)))
            if ops:
                store.engine().write_records(ops)


def collect(store: JobStore, names: list[str], live: Iterable[Counters]
            ) -> dict[str, dict[str, Any]]:
    """Per queue (``names`` first, then any other queue the records name): depth,
    scheduled, in flight, dead, done, failed and retried counts, and p50/p99 latency.
    ``live``: the counters of this process's running workers, whose latencies in memory
    are newer than the stored ones."""
    eng = store.engine()
    scheduled: dict[str, int] = {}
    for _, value in store.scan(R.NS_SCHED):
        queue = R.unpack(value)[0]
        scheduled[queue] = scheduled.get(queue, 0) + 1
    dead: dict[str, int] = {}
    for key, _ in store.scan(R.NS_DEAD):
        queue = key.split(b"\x00", 1)[0].decode("utf-8", "replace")
        dead[queue] = dead.get(queue, 0) + 1
    counts: dict[str, dict[str, Any]] = {}
    running = {counters.worker_id: counters for counters in live}
    for ns in (R.NS_STATS, R.NS_LAT):
        for key, value in store.scan(ns):
            queue, wid = _split(key)
            if ns == R.NS_LAT and wid in running:
                continue  # a worker of this TaskQueue: its samples in memory are newer
            merge(counts.setdefault(queue, _blank()), R.unpack(value))
    for counters in running.values():
        for queue, hist in counters.latency().items():
            merge(counts.setdefault(queue, _blank()), {"lat": hist})
    names = list(names)
    names += sorted((set(scheduled) | set(dead) | set(counts)) - set(names))
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        ns = R.queue_ns(name)
        c = counts.get(name) or _blank()
        out[name] = {
            "depth": eng.length(ns), "scheduled": scheduled.get(name, 0),
            "in_flight": eng.in_flight(ns), "dead": dead.get(name, 0),
            "done": c.get("done", 0), "failed": c.get("failed", 0),
            "retried": c.get("retried", 0),
            "latency_p50_ms": percentile(c.get("lat", {}), 0.50),
            "latency_p99_ms": percentile(c.get("lat", {}), 0.99),
        }
    return out
