"""``Worker``: a pool, a scheduler thread, and the order in which they stop.

Start: open the directory, start the scheduler (delays, retries, periodic ticks, expiry)
and the pool. Stop, in order: stop fetching; let the running jobs finish within the
grace period (jobs fetched but not started go back to the front untouched); interrupt
what can be interrupted and give it back; stop the scheduler and store the counters.
The directory is closed by the TaskQueue, after its workers stopped.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

from ..._checks import check_duration
from .. import layout as R
from ..app import TaskApp
from ..stats import Counters
from .aiopool import AsyncPool
from .pools import Pool, ThreadPool
from .presence import Presence
from .procpool import ProcessPool
from .runner import Runner
from .scheduler import Scheduler

log = logging.getLogger("diskqueue.worker")

POOLS = ("thread", "process", "async")


def check_queues(queues: Any) -> Optional[dict[str, float]]:
    """``queues=`` as ``{name: weight}`` (a list of names, or a comma-separated str:
    strict order, weights 0), or None for every queue. Raises TypeError or ValueError
    for a bad name or weight, or an empty list."""
    if queues is None:
        return None
    if isinstance(queues, str):
        queues = [q for q in queues.split(",") if q]
    if isinstance(queues, dict):
        out = {}
        for name, weight in queues.items():
            R.check_queue(name)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise TypeError(f"queue weight must be a number, not {type(weight).__name__}")
            if not 0 < weight < math.inf:
                raise ValueError(f"queue weight must be a finite number > 0, not {weight}")
            out[name] = float(weight)
        if not out:
            raise ValueError("queues is empty")
        return out
    if not isinstance(queues, (list, tuple)):
        raise TypeError(f"queues must be a list of names or a dict of weights, "
                        f"not {type(queues).__name__}")
    if not queues:
        raise ValueError("queues is empty")
    return {R.check_queue(name): 0.0 for name in queues}


class Worker:
    """Runs the jobs of a TaskQueue in this process. Use ``tasks.start()`` or
    ``tasks.run()`` rather than building one.

    ``on_stop`` is called with the worker once it stopped (more such calls can be added
    to the ``on_stop`` list, e.g. to close a metrics server). Raises TypeError or
    ValueError for a bad ``concurrency``, ``pool`` or ``queues``.
    """

    def __init__(self, tasks: TaskApp, *, concurrency: int = 4, pool: str = "thread",
                 queues: Any = None, app: Optional[str] = None,
                 on_stop: Optional[Callable[[Worker], None]] = None) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError(f"concurrency must be an int, not {type(concurrency).__name__}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {pool!r}")
        self.tasks = tasks
        self.concurrency = concurrency
        self.pool_kind = pool
        self.app = app
        self._queues = check_queues(queues)
        self._weighted = bool(self._queues) and any(self._queues.values())  # type: ignore[union-attr]
        self._order: list[bytes] = []
        self._rng = random.Random()
        self.on_stop: list[Callable[[Worker], None]] = [on_stop] if on_stop else []
        self.runner: Any = None  # a Runner, a Pool and a Scheduler once started
        self.pool: Any = None
        self.scheduler: Any = None
        self.presence: Optional[Presence] = None
        self.started = False
        self.stopped = False
        self.clean: Optional[bool] = None
        self.metrics: Any = None  # the MetricsServer, when started with metrics_port

    # -- queues ----------------------------------------------------------------
    def queue_names(self) -> list[str]:
        """The queues served, in the order they are tried (weights: most weight first)."""
        if self._queues is None:
            return self.tasks.queue_names() or ["default"]
        weights = self._queues
        return sorted(weights, key=lambda q: -weights[q]) if self._weighted else list(weights)

    def _refresh(self) -> None:
        self._order = [R.queue_ns(q) for q in self.queue_names()]

    def _fetch_order(self) -> list[bytes]:
        if not self._weighted:
            return self._order
        # Weighted: draw the order, each queue with probability proportional to its weight.
        names = list(self._queues)  # type: ignore[arg-type]
        weights = [self._queues[n] for n in names]  # type: ignore[index]
        order = []
        while names:
            i = self._rng.choices(range(len(names)), weights)[0]
            order.append(R.queue_ns(names.pop(i)))
            weights.pop(i)
        return order

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Worker:
        """Start the scheduler and the pool; returns the worker. Raises RuntimeError
        when it was started before, and what opening the directory raises."""
        if self.started:
            raise RuntimeError("this worker was already started")
        self.started = True
        tasks = self.tasks
        self._refresh()
        self.runner = Runner(tasks, self._fetch_order)
        pool = self.pool = self._make_pool(self.runner)
        on_timeout = None if pool.enforces_timeouts else pool.on_timeout
        on_pass = self._refresh if self._queues is None else None
        self.scheduler = Scheduler(tasks, self.runner, lambda: set(self.queue_names()),
                                   on_timeout, on_pass)
        # said before anything runs: no job's line comes before it
        log.info("worker started: %s pool, concurrency %d, queues %s", self.pool_kind,
                 self.concurrency, ", ".join(self.queue_names()))
        self.scheduler.start()
        self.pool.start()
        self.presence = Presence(self)
        self.presence.start()
        return self

    def _make_pool(self, runner: Runner) -> Pool:
        if self.pool_kind == "thread":
            # weights share the worker job by job: no batches there
            return ThreadPool(runner, self.concurrency,
                              batch=1 if self._weighted else ThreadPool.BATCH)
        if self.pool_kind == "async":
            return AsyncPool(runner, self.concurrency)
        return ProcessPool(runner, self.concurrency, self.app)

    def stop(self, timeout: Optional[float] = 30.0,
             interrupt: Optional[threading.Event] = None) -> bool:
        """Stop fetching, let running jobs finish within ``timeout`` seconds (None or
        ``math.inf``: wait for them all), then give back what is left. True when nothing
        was left."""
        timeout = check_duration("timeout", timeout, allow_inf=True)
        if not self.started or self.stopped:
            return self.clean if self.clean is not None else True
        self.stopped = True
        self.runner.stopping.set()
        deadline = float("inf") if timeout is None else time.monotonic() + timeout
        left = self.pool.join(deadline, interrupt)
        if left:
            self.pool.abandon(left)
        self.pool.close()
        if self.presence is not None:
            self.presence.stop()
        self.scheduler.stop()
        if not left:
            self.runner.counters.fold(self.tasks.store, self.scheduler.shared.scheduling,
                                      own=True)
        self.clean = not left
        for call in self.on_stop:
            call(self)
        log.info("worker stopped%s", "" if not left else f"; {len(left)} jobs were cut short")
        return self.clean

    @property
    def counters(self) -> Counters:
        """This worker's counts and latencies (see :class:`~..stats.Counters`)."""
        return self.runner.counters

    @property
    def finished(self) -> int:
        """Jobs that ended here (success or dead)."""
        return int(self.runner.finished) if self.runner else 0

    # -- draining --------------------------------------------------------------
    def remaining(self) -> int:
        """Jobs not finished: ready, in flight (in the served queues) and scheduled.

        Read in that order, with the scheduler's moves held off: a job only moves
        forward along it (taken, then finished or scheduled for a retry), so a job that
        moves while it is being counted is still counted once or more, never missed.
        """
        store = self.tasks.store
        eng = store.engine()
        with self.scheduler.shared.scheduling:
            total = sum(eng.length(ns) for ns in self._order)
            total += sum(eng.in_flight(ns) for ns in self._order)
            return total + sum(len(page) for page in store.pages(R.NS_SCHED))

    def idle(self) -> bool:
        """True when no job is left to run: the counts of :meth:`remaining`, stopping
        at the first job seen."""
        if self.runner.active:
            return False
        store = self.tasks.store
        eng = store.engine()
        with self.scheduler.shared.scheduling:
            return (not any(eng.length(ns) for ns in self._order)
                    and not any(eng.in_flight(ns) for ns in self._order)
                    and store.first(R.NS_SCHED) is None)

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Wait until no job is left (``idle()``); False if ``timeout`` passed first
        (None or ``math.inf``: wait for ever)."""
        timeout = check_duration("timeout", timeout, allow_inf=True)
        end = None if timeout is None else time.monotonic() + timeout
        quiet = threading.Event()
        seen_idle = False
        while True:
            idle = self.idle()
            if idle and seen_idle:  # twice in a row: covers other processes' moves too
                return True
            seen_idle = idle
            if end is not None and time.monotonic() >= end:
                return False
            quiet.wait(0.02)
