"""The worker's scheduler thread: due jobs into their queues, periodic ticks, expiry.

It sleeps on an Event until the next due time, at most ``MAX_SLEEP`` seconds, so a
delayed job that another handle wrote is seen in time; an enqueue with a delay in this
process wakes it at once. Each pass is a few batches: the due schedule records move
into their queues in the same batch that deletes them, and a periodic tick is recorded
in the same batch that enqueues its job, so a restart never repeats either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Optional

from .. import layout as R
from ..app import TaskApp
from ..job import PENDING, SCHEDULED, SUCCESS
from ..task import TaskFunction
from .outcome import timed_out
from .runner import Run, Runner

log = logging.getLogger("diskqueue.worker")

MAX_SLEEP = 0.5
BATCH = 500
EXPIRE_EVERY = 5.0
MOVED_KEEP = 600.0  # seconds a "moved" marker outlives its schedule record


class Scheduler:
    """The scheduler thread of a worker running ``tasks``.

    ``served`` gives the names of the queues the worker serves (their periodic tasks
    tick here); ``on_timeout`` is the pool's reaction to a run the scheduler finished as
    timed out (None: the pool enforces timeouts itself); ``on_pass`` is called after
    each pass. Raises ``Closed`` when the TaskQueue is closed.
    """

    def __init__(self, tasks: TaskApp, runner: Runner, served: Callable[[], set[str]],
                 on_timeout: Optional[Callable[[Run], None]] = None,
                 on_pass: Optional[Callable[[], None]] = None) -> None:
        self.tasks = tasks
        self.runner = runner
        self.store = tasks.store
        self.eng = self.store.engine()
        self.clock = self.store.clock
        self.served = served
        self.on_timeout = on_timeout
        self.on_pass = on_pass
        self.shared = self.store.shared
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self._last_tick: dict[str, float] = {}
        self._next_expire = 0.0
        self._thread = threading.Thread(target=self._loop, name="diskqueue-scheduler",
                                        daemon=True)

    def start(self) -> None:
        """Load the periodic tasks' last ticks, fold the counts of workers gone, and
        start the thread."""
        self.shared.wakers.add(self.wake)
        with self.shared.scheduling:
            self._load_ticks(self.clock())
        self.runner.counters.fold(self.store, self.shared.scheduling)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (after its pass) and store the latency counts."""
        self.stopped.set()
        self.wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self.shared.wakers.discard(self.wake)
        self.runner.counters.flush_latency(self.store)

    # -- the loop ----------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stopped.is_set():
            self.wake.clear()
            try:
                sleep = self.step()
            except Exception:
                if self.stopped.is_set():
                    return
                log.exception("scheduler pass failed; trying again")
                sleep = MAX_SLEEP
            self.wake.wait(sleep)

    def step(self) -> float:
        """One pass; returns how long to sleep before the next."""
        now = self.clock()
        with self.shared.scheduling:
            next_due = self.move_due(now)
            next_tick = self.tick_periodic(now)
        soonest = min(next_due, next_tick) - now
        mono = time.monotonic()
        deadline = self._reap_timeouts(mono)
        if mono >= self._next_expire:
            self.expire_results(now)
            self._next_expire = mono + EXPIRE_EVERY
        self.runner.counters.flush_latency(self.store)
        if self.on_pass is not None:
            self.on_pass()
        if deadline is not None:
            soonest = min(soonest, deadline - mono)
        return max(0.0, min(soonest, MAX_SLEEP))

    # -- delayed jobs and retries --------------------------------------------------
    def move_due(self, now: float) -> float:
        """Move every due schedule record into its queue; return the next due time.

        Each move is one batch: push the job, delete the schedule record, and leave a
        "moved" marker that the push is conditional on, so two worker processes that
        read the same record never both enqueue it.
        """
        stop = (R.ms(now) + 1).to_bytes(8, "big")
        for page in self.store.pages(R.NS_SCHED, stop=stop, size=BATCH):
            for key, value in page:
                queue, priority, was_scheduled = R.unpack(value)
                jid = key[8:]
                ops: R.Ops = [(R.NS_SCHED, key, None), (R.NS_MOVED, key, b"")]
                if was_scheduled:
                    rec = self.store.read(jid)
                    if rec is not None and rec["state"] == SCHEDULED:
                        rec["state"] = PENDING
                        ops.append((R.NS_JOBS, jid, R.pack(rec)))
                self.eng.push_unless(R.queue_ns(queue), [(R.lane_of(priority), jid)],
                                     (R.NS_MOVED, key), records=ops)
        first = self.store.first(R.NS_SCHED)
        return R.due_of(first[0]) if first else now + MAX_SLEEP

    # -- periodic tasks --------------------------------------------------------------
    def _periodic(self) -> list[TaskFunction]:
        served = self.served()
        return [t for t in self.tasks.registry.values()
                if t.periodic is not None and t.options.queue in served]

    def _load_ticks(self, now: float) -> None:
        """The last tick of each periodic task; a first start records ``now``."""
        for task in self._periodic():
            last = self.store.last_tick(task.name)
            if last is not None:
                self._last_tick[task.name] = last
            else:
                self.eng.write_records([(R.NS_TICK, R.tick_key(task.name, now), b"")])
                self._last_tick[task.name] = R.ms(now) / 1000.0

    def tick_periodic(self, now: float) -> float:
        """Enqueue the periodic jobs that are due; return the next tick time."""
        soonest = now + MAX_SLEEP
        for task in self._periodic():
            assert task.periodic is not None
            last = self._last_tick.get(task.name)
            if last is None:
                continue  # registered after the worker started
            due = task.periodic.next_after(last)
            if due <= now:
                # Missed ticks collapse into one; the tick recorded is the latest one due.
                tick = due
                following = task.periodic.next_after(tick)
                while following <= now:
                    tick, following = following, task.periodic.next_after(following)
                self._enqueue_tick(task, last, tick, now)
                due = following
            soonest = min(soonest, due)
        return soonest

    def _enqueue_tick(self, task: TaskFunction, last: float, tick: float, now: float) -> None:
        opts = task.options
        rec = R.new_record(self.store.new_id(), task.name, [], {}, opts.queue, opts.priority,
                           now, tick=tick)
        jid = rec["id"]
        jidb = jid.encode()
        new_key = R.tick_key(task.name, tick)
        ops = [(R.NS_JOBS, jidb, R.pack(rec)), (R.NS_TICK, new_key, b""),
               (R.NS_TICK, R.tick_key(task.name, last), None)]
        found = self.eng.push_unless(R.queue_ns(opts.queue), [(R.lane_of(opts.priority), jidb)],
                                     (R.NS_TICK, new_key), records=ops)
        self._last_tick[task.name] = R.ms(tick) / 1000.0
        if found is None:
            log.info("periodic task %s: tick %s enqueued as job %s", task.name, tick, jid)

    # -- results past their ttl ----------------------------------------------------
    def expire_results(self, now: float) -> None:
        """Forget finished jobs past their ``result_ttl``, and old "moved" markers."""
        self._delete_before(R.NS_MOVED, now - MOVED_KEEP, lambda key: [])
        self._delete_before(R.NS_EXPIRE, now, self._expired_job)

    def _expired_job(self, key: bytes) -> R.Ops:
        rec = self.store.read(key[8:])
        if rec is not None and rec["state"] == SUCCESS:
            return [(R.NS_JOBS, key[8:], None), *R.forget_retries(rec)]
        return []

    def _delete_before(self, ns: bytes, until: float, also: Callable[[bytes], R.Ops]
                       ) -> None:
        stop = (max(R.ms(until), 0) + 1).to_bytes(8, "big")
        for page in self.store.pages(ns, stop=stop, size=BATCH):
            ops: R.Ops = []
            for key, _ in page:
                ops.append((ns, key, None))
                ops += also(key)
            self.eng.write_records(ops)

    # -- timeouts (pools that cannot interrupt a run themselves) ---------------------
    def _reap_timeouts(self, mono: float) -> Optional[float]:
        if self.on_timeout is None:
            return None
        for run in self.runner.timed_out(mono):
            task = run.task
            assert task is not None and task.options.timeout is not None
            if self.runner.finish(run, timed_out(task.name, task.options.timeout)):
                log.warning("job %s (%s) ran past its timeout of %g s; its thread is "
                            "abandoned and replaced", run.job.id, task.name,
                            task.options.timeout)
                self.on_timeout(run)
        return self.runner.next_deadline()
