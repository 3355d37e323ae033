"""What one process does to jobs, counted by a task-queue middleware.

:class:`JobMetrics` hooks into a TaskQueue (``before_run``/``after_run``/``on_retry``/
``on_dead``/``after_enqueue``), so it counts in whichever process runs those hooks: the
worker that starts and finishes jobs (with ``pool="process"`` that is the parent, which
marks each job started and stores its outcome, so every child's jobs are counted there),
and any process that enqueues through a TaskQueue carrying it. Counters start at zero
with the process, as Prometheus counters do; ``rate()`` and ``increase()`` handle restarts.

The hooks run on the worker's hot path, so they take no lock: each thread counts into a
tally of its own (plain dicts and lists only it writes), and a scrape adds the tallies
up. ``prometheus_client``'s own metric objects take a lock per update and scan the
buckets of a histogram one by one, which cost the drain rate a measurable share.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

from ..tasks import Middleware
from . import require

if TYPE_CHECKING:
    from ..tasks import Job, TaskQueue

# Seconds: a quick task takes milliseconds, a report may take an hour; a queue may wait
# as long. Prometheus needs fixed buckets, so they span both ends.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0, 900.0, 3600.0, float("inf"))

STATES = ("enqueued", "started", "succeeded", "failed", "retried", "dead")

HISTOGRAMS = {
    "run": ("diskqueue_job_run_seconds", "Run time of a job, from the call to its return"),
    "wait": ("diskqueue_job_wait_seconds", "Wait of a job from enqueue (or its due time) to "
                                           "its start"),
}


class _Tally:
    """One thread's counts. Only that thread writes them; a scrape copies them (a dict or
    list copy is one step under the GIL)."""

    __slots__ = ("counts", "hists")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}  # (state, task, queue) -> n
        # (kind, task, queue) -> a count per bucket (not cumulative), then the sum
        self.hists: dict[tuple[str, str, str], list[float]] = {}

    def add(self, state: str, task: str, queue: str) -> None:
        """Count one job of ``task`` in ``queue`` reaching ``state``."""
        key = (state, task, queue)
        self.counts[key] = self.counts.get(key, 0) + 1

    def observe(self, key: tuple[str, str, str], seconds: float) -> None:
        """Put one duration into the histogram of ``key`` (kind, task, queue)."""
        hist = self.hists.get(key)
        if hist is None:
            hist = self.hists[key] = [0.0] * (len(BUCKETS) + 1)
        hist[bisect.bisect_left(BUCKETS, seconds)] += 1  # the first bound >= seconds
        hist[-1] += seconds


class JobMetrics(Middleware):
    """Counters of jobs by state, and histograms of run time and wait, per task and queue.

    ``diskqueue_jobs_total{state,task,queue}``: ``enqueued`` (``delay``/``apply``/
    ``enqueue``/``enqueue_many`` in this process), ``started``, ``succeeded`` (the task
    returned), ``failed`` (a run raised or timed out: each one is then ``retried`` or
    ``dead``), ``retried`` and ``dead``. ``diskqueue_job_run_seconds{task,queue}``: from
    the call to its return. ``diskqueue_job_wait_seconds{task,queue}``: from enqueue (or
    the due time of a delayed job or a retry) to start.

    It is a middleware and a ``prometheus_client`` collector: add it with
    ``TaskQueue(..., middleware=[JobMetrics()])`` and register it in a registry;
    :func:`diskqueue.metrics.server.serve` does both. Raises
    :class:`~diskqueue.metrics.MetricsUnavailable` without ``prometheus_client``.
    """

    def __init__(self) -> None:
        self._core = require("prometheus_client.core")
        self._bounds = [require("prometheus_client.utils").floatToGoString(b) for b in BUCKETS]
        self._local = threading.local()
        self._tallies: list[_Tally] = []  # every thread's, kept after it ends
        self._tallies_lock = threading.Lock()  # taken once per thread, at its first count
        # job id -> (time.perf_counter() at its start, task, queue); set/pop are atomic
        self._running: dict[str, tuple[float, str, str]] = {}
        # jobs whose run was ended (timed out) while their thread still ran: when that
        # thread returns at last, the job has already failed, and is not a success
        self._cut: set[str] = set()

    @classmethod
    def of(cls, tasks: TaskQueue) -> JobMetrics:
        """The JobMetrics already added to ``tasks``, else a new one added to it (one per
        TaskQueue, so a second worker or server does not count each job twice)."""
        for middleware in tasks.hooks.items:
            if isinstance(middleware, cls):
                return middleware
        made = cls()
        tasks.add_middleware(made)
        return made

    @property
    def busy(self) -> int:
        """Jobs running in this process now (started and not yet returned)."""
        return len(self._running)

    # -- counting (no lock) ------------------------------------------------------
    def _tally(self) -> _Tally:
        try:
            return self._local.tally  # type: ignore[no-any-return]
        except AttributeError:
            tally = self._local.tally = _Tally()
            with self._tallies_lock:
                self._tallies.append(tally)
            return tally

    def _count(self, state: str, job: Job) -> None:
        self._tally().add(state, job.task, job.queue)

    # -- hooks -----------------------------------------------------------------
    def after_enqueue(self, job: Job) -> None:
        """Count an enqueue."""
        self._count("enqueued", job)

    def before_run(self, job: Job) -> None:
        """Count a start and observe its wait (the job's own record: no disk read)."""
        record = job.snapshot()
        task, queue = record["task"], record["queue"]
        tally = self._tally()
        tally.add("started", task, queue)
        started, ready = record.get("started"), record.get("ready")
        if started is not None and ready is not None:
            tally.observe(("wait", task, queue), max(started - ready, 0.0))
        self._running[job.id] = (time.perf_counter(), task, queue)

    def after_run(self, job: Job, result: Any = None, error: Optional[BaseException] = None,
                  duration: Optional[float] = None) -> None:
        """Observe the run time (the runner's ``duration`` when it gives one); count a
        success."""
        if self._cut and job.id in self._cut:
            self._cut.discard(job.id)
            return
        tally = self._tally()
        entry = self._running.pop(job.id, None)
        if entry is not None:
            began, task, queue = entry
            took = duration if duration is not None else time.perf_counter() - began
            tally.observe(("run", task, queue), took)
        else:
            task, queue = job.task, job.queue
        if error is None:
            tally.add("succeeded", task, queue)

    def on_retry(self, job: Job, error: BaseException, delay: float,
                 duration: Optional[float] = None) -> None:
        """Count a failed run that will be retried."""
        self._failed(job)
        self._count("retried", job)

    def on_dead(self, job: Job, error: BaseException, duration: Optional[float] = None
                ) -> None:
        """Count a failed run that was the last one."""
        self._failed(job)
        self._count("dead", job)

    def _failed(self, job: Job) -> None:
        entry = self._running.pop(job.id, None)
        if entry is not None:
            # Still running: a thread pool's timeout ended the run; the thread goes on.
            began, task, queue = entry
            self._tally().observe(("run", task, queue), time.perf_counter() - began)
            self._cut.add(job.id)
        self._count("failed", job)

    # -- the collector -----------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        """The counters and histograms: every thread's tally, added up now."""
        counts: dict[tuple[str, str, str], int] = {}
        hists: dict[tuple[str, str, str], list[float]] = {}
        with self._tallies_lock:
            tallies = list(self._tallies)
        for tally in tallies:
            for key, n in tally.counts.copy().items():
                counts[key] = counts.get(key, 0) + n
            for key, hist in tally.hists.copy().items():
                into = hists.setdefault(key, [0.0] * (len(BUCKETS) + 1))
                for i, value in enumerate(hist.copy()):
                    into[i] += value
        jobs = self._core.CounterMetricFamily(
            "diskqueue_jobs", "Jobs enqueued, started, succeeded, failed, retried or dead in "
            "this process", labels=["state", "task", "queue"])
        for (state, task, queue), n in sorted(counts.items()):
            jobs.add_metric([state, task, queue], n)
        yield jobs
        for kind, (name, text) in HISTOGRAMS.items():
            family = self._core.HistogramMetricFamily(name, text, labels=["task", "queue"])
            for (of, task, queue), hist in sorted(hists.items()):
                if of != kind:
                    continue
                cumulative, buckets = 0.0, []
                for bound, in_bucket in zip(self._bounds, hist[:-1], strict=True):
                    cumulative += in_bucket
                    buckets.append((bound, cumulative))
                family.add_metric([task, queue], buckets, hist[-1])
            yield family
