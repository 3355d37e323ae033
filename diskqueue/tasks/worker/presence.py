"""A running worker's record of itself, for the dashboard: who it is, what it runs.

Workers wrote nothing about themselves but their counters, so nothing outside the
process could tell which workers are alive, how many jobs each may run at once, what
they are running or when their periodic tasks tick next. Each worker now keeps one
record under ``layout.NS_WORKERS`` (key: its worker id), rewritten every
:data:`BEAT` seconds by a thread of its own and deleted when it stops cleanly. A worker
killed with SIGKILL leaves its record behind until the next worker starts; a reader
tells the living by the age of ``beat`` (see :func:`alive`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Protocol

from .. import layout as R
from ..app import TaskApp
from ..stats import Counters


class Worker(Protocol):
    """What a presence record tells of a worker (a
    :class:`~diskqueue.tasks.worker.worker.Worker` is one)."""

    tasks: TaskApp
    runner: Any
    pool_kind: str
    concurrency: int

    @property
    def counters(self) -> Counters:
        """The worker's counters, whose ``worker_id`` names it."""

    def queue_names(self) -> list[str]:
        """The queues it serves, in the order it tries them."""

BEAT = 2.0  # seconds between two writes of a worker's record
STALE = 10.0  # a record not rewritten for this long belongs to a worker that is gone
RUNNING_SHOWN = 50  # at most this many running jobs are listed in the record


def _record(worker: Worker, started: float) -> dict[str, Any]:
    tasks = worker.tasks
    running = []
    for run in list(worker.runner.active.copy())[:RUNNING_SHOWN]:
        rec = run.record
        running.append({"id": rec.get("id"), "task": rec.get("task"),
                        "queue": rec.get("queue"), "started": rec.get("started")})
    now = tasks.store.clock()
    periodic = []
    for task in list(tasks.registry.values()):
        if task.periodic is not None:
            periodic.append({"task": task.name, "queue": task.options.queue,
                             "schedule": task.periodic.describe(),
                             "next": _next_tick(worker, task, now)})
    return {"id": worker.counters.worker_id, "pid": os.getpid(), "host": socket.gethostname(),
            "pool": worker.pool_kind, "concurrency": worker.concurrency,
            "queues": worker.queue_names(), "started": started, "beat": time.time(),
            "running": running, "periodic": periodic}


def _next_tick(worker: Worker, task: Any, now: float) -> float:
    last = worker.tasks.store.last_tick(task.name)
    return float(task.periodic.next_after(now if last is None else last))


class Presence:
    """Keeps one worker's record fresh from a thread of its own until :meth:`stop`."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.key = worker.counters.worker_id.encode()
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="diskqueue-presence",
                                        daemon=True)

    def start(self) -> None:
        """Write the record, drop those of workers gone without a word (SIGKILL), and
        keep the record fresh from now on."""
        self._write()
        eng = self.worker.tasks.store.engine()
        now = time.time()
        gone = [(R.NS_WORKERS, bytes(key), None) for key, value
                in eng.scan_records(R.NS_WORKERS, limit=10_000)
                if not alive(R.unpack(bytes(value)), now)]
        if gone:
            eng.write_records(gone)
        self._thread.start()

    def _write(self) -> None:
        record = _record(self.worker, self.started)
        self.worker.tasks.store.engine().write_records([(R.NS_WORKERS, self.key, R.pack(record))])

    def _loop(self) -> None:
        while not self._stop.wait(BEAT):
            try:
                self._write()
            except Exception:  # a closed or failing directory: the worker reports that
                return

    def stop(self) -> None:
        """Stop the thread and delete the record (the worker is no longer there)."""
        self._stop.set()
        self._thread.join()
        try:
            self.worker.tasks.store.engine().write_records([(R.NS_WORKERS, self.key, None)])
        except Exception:  # pragma: no cover - the directory failed as the worker stopped
            pass


def alive(record: dict[str, Any], now: float) -> bool:
    """True when the worker of this record rewrote it within :data:`STALE` seconds."""
    return now - float(record.get("beat", 0)) < STALE
