"""Gauges read from the directory when Prometheus scrapes, so they are right whichever
process enqueued or ran the jobs; and the busy/idle slots of a worker.

A task directory gives, per queue, ``depth`` (ready), ``scheduled``, ``in_flight`` and
``dead``, and the ``done``/``failed``/``retried`` counts every worker stores with each
outcome (``TaskQueue.stats()``). A plain queue directory gives ``depth`` and
``in_flight`` per namespace (``diskq stats``). A scrape that cannot read the directory
shows ``diskqueue_directory_up 0`` (and logs why) instead of failing the whole scrape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import DiskQueueError
from ..sharing.registry import acquire
from ..tasks import TaskQueue, layout
from . import require

if TYPE_CHECKING:
    from .counters import JobMetrics

log = logging.getLogger("diskqueue.metrics")

# stats() name -> (metric name, help)
GAUGES = {
    "depth": ("diskqueue_queue_depth", "Jobs (or items) ready to be taken"),
    "scheduled": ("diskqueue_queue_scheduled", "Jobs waiting for their due time (delayed, "
                                                "or a retry after its backoff)"),
    "in_flight": ("diskqueue_queue_in_flight", "Jobs (or items) taken and not yet finished "
                                                "(acknowledged)"),
    "dead": ("diskqueue_queue_dead", "Jobs in the dead-letter set"),
}
# stats() name -> state label of diskqueue_queue_jobs_total
STORED_COUNTS = {"done": "succeeded", "failed": "failed", "retried": "retried"}

Reading = dict[str, dict[str, Any]]  # queue -> stats() row (or depth/in_flight only)


def read_tasks(tasks: TaskQueue) -> Reading:
    """The stats of a TaskQueue this process already uses (a worker's)."""
    return tasks.stats()


def read_path(path: str, connect_timeout: float = 10.0) -> Reading:
    """The stats of the directory at ``path``, opened for this read and closed again: a
    process holding it serves the read, and none is kept waiting on this one."""
    if not os.path.isdir(path):
        raise DiskQueueError(f"{path} is not a directory (or no longer exists)")
    engine = acquire(path, connect_timeout=connect_timeout)
    try:
        if engine.get_record(layout.NS_META, b"format") is None:
            return {(ns or "default"): {"depth": c["ready"], "in_flight": c["reserved"]}
                    for ns, c in engine.info().items()}
    finally:
        engine.release()
    with TaskQueue(path, connect_timeout=connect_timeout) as tasks:
        return tasks.stats()


class DirectoryCollector:
    """A ``prometheus_client`` collector calling ``read()`` at each scrape."""

    def __init__(self, read: Callable[[], Reading]) -> None:
        self._core = require("prometheus_client.core")
        self._read = read

    def collect(self) -> Iterator[Any]:
        """The gauges (and stored counts) of every queue, read now."""
        core = self._core
        up = core.GaugeMetricFamily("diskqueue_directory_up",
                                    "1 when this scrape could read the directory, else 0")
        try:
            reading = self._read()
        except (DiskQueueError, OSError) as exc:
            log.warning("metrics: cannot read the directory: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for field, (name, text) in GAUGES.items():
            family = core.GaugeMetricFamily(name, text, labels=["queue"])
            for queue, row in reading.items():
                if field in row:
                    family.add_metric([queue], row[field])
            if family.samples:
                yield family
        stored = core.CounterMetricFamily(
            "diskqueue_queue_jobs", "Jobs that succeeded, failed runs and retries, counted "
            "on disk by every worker of the directory", labels=["queue", "state"])
        for queue, row in reading.items():
            for field, state in STORED_COUNTS.items():
                if field in row:
                    stored.add_metric([queue, state], row[field])
        if stored.samples:
            yield stored


class SlotsCollector:
    """``diskqueue_worker_slots{state="busy"|"idle"}``: jobs this process is running,
    and how many more its worker would take (``concurrency`` minus busy)."""

    def __init__(self, metrics: JobMetrics, concurrency: int) -> None:
        self._core = require("prometheus_client.core")
        self._metrics = metrics
        self._concurrency = concurrency

    def collect(self) -> Iterator[Any]:
        """The slots, counted now."""
        busy = self._metrics.busy
        family = self._core.GaugeMetricFamily(
            "diskqueue_worker_slots", "Worker slots (threads, coroutines or child processes) "
            "running a job (busy) or waiting for one (idle)", labels=["state"])
        family.add_metric(["busy"], busy)
        family.add_metric(["idle"], max(self._concurrency - busy, 0))
        yield family
