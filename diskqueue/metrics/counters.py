"""What one process does to jobs, counted by a task-queue middleware.

:class:`JobMetrics` hooks into a TaskQueue (``before_run``/``after_run``/``on_retry``/
``on_dead``/``after_enqueue``), so it counts in whichever process runs those hooks: the
worker that starts and finishes jobs (with ``pool="process"`` that is the parent, which
marks each job started and stores its outcome, so every child's jobs are counted there),
and any process that enqueues through a TaskQueue carrying it. Counters start at zero
with the process, as Prometheus counters do; ``rate()`` and ``increase()`` handle restarts.
"""

from __future__ import annotations

import time
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


class JobMetrics(Middleware):
    """Counters of jobs by state, and histograms of run time and wait, per task and queue.

    ``diskqueue_jobs_total{state,task,queue}``: ``enqueued`` (``delay``/``apply``/
    ``enqueue``/``enqueue_many`` in this process), ``started``, ``succeeded`` (the task
    returned), ``failed`` (a run raised or timed out: each one is then ``retried`` or
    ``dead``), ``retried`` and ``dead``. ``diskqueue_job_run_seconds{task,queue}``: from
    the call to its return. ``diskqueue_job_wait_seconds{task,queue}``: from enqueue (or
    the due time of a delayed job or a retry) to start.

    Add it with ``TaskQueue(..., middleware=[JobMetrics()])`` and register
    :meth:`collectors` in a registry; :func:`diskqueue.metrics.server.serve` does both.
    Raises :class:`~diskqueue.metrics.MetricsUnavailable` without ``prometheus_client``.
    """

    def __init__(self) -> None:
        client = require()
        self.jobs = client.Counter(
            "diskqueue_jobs", "Jobs enqueued, started, succeeded, failed, retried or dead "
            "in this process", ["state", "task", "queue"], registry=None)
        self.run_seconds = client.Histogram(
            "diskqueue_job_run_seconds", "Run time of a job, from the call to its return",
            ["task", "queue"], buckets=BUCKETS, registry=None)
        self.wait_seconds = client.Histogram(
            "diskqueue_job_wait_seconds", "Wait of a job from enqueue (or its due time) to "
            "its start", ["task", "queue"], buckets=BUCKETS, registry=None)
        # label lookups cached: labels() takes a lock and builds a tuple on every call
        self._children: dict[tuple[Any, ...], Any] = {}
        # job id -> time.perf_counter() at its start; dict set/pop are atomic under the GIL
        self._running: dict[str, float] = {}
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

    def collectors(self) -> list[Any]:
        """The metric objects, to register in a ``prometheus_client`` registry."""
        return [self.jobs, self.run_seconds, self.wait_seconds]

    @property
    def busy(self) -> int:
        """Jobs running in this process now (started and not yet returned)."""
        return len(self._running)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, metric.labels(*labels))
        return child

    def _count(self, state: str, job: Job) -> None:
        self._child(self.jobs, state, job.task, job.queue).inc()

    # -- hooks -----------------------------------------------------------------
    def after_enqueue(self, job: Job) -> None:
        """Count an enqueue."""
        self._count("enqueued", job)

    def before_run(self, job: Job) -> None:
        """Count a start and observe its wait (the job's own record: no disk read)."""
        self._running[job.id] = time.perf_counter()
        self._count("started", job)
        record = job.snapshot()
        started, ready = record.get("started"), record.get("ready")
        if started is not None and ready is not None:
            self._child(self.wait_seconds, job.task, job.queue).observe(max(started - ready,
                                                                            0.0))

    def after_run(self, job: Job, result: Any = None, error: Optional[BaseException] = None
                  ) -> None:
        """Observe the run time; count a success."""
        if job.id in self._cut:
            self._cut.discard(job.id)
            return
        self._ran(job)
        if error is None:
            self._count("succeeded", job)

    def on_retry(self, job: Job, error: BaseException, delay: float) -> None:
        """Count a failed run that will be retried."""
        self._failed(job)
        self._count("retried", job)

    def on_dead(self, job: Job, error: BaseException) -> None:
        """Count a failed run that was the last one."""
        self._failed(job)
        self._count("dead", job)

    def _ran(self, job: Job) -> bool:
        """Observe the run time of a run that ended; False if none was running."""
        began = self._running.pop(job.id, None)
        if began is None:
            return False
        self._child(self.run_seconds, job.task, job.queue).observe(time.perf_counter() - began)
        return True

    def _failed(self, job: Job) -> None:
        # Still running: a thread pool's timeout ended the run, and the thread goes on.
        if self._ran(job):
            self._cut.add(job.id)
        self._count("failed", job)
