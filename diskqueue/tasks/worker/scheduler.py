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
from typing import TYPE_CHECKING, Any, Optional

from .. import layout as R
from ..directory import shared
from ..job import PENDING, SCHEDULED
from ..task import TaskFunction

if TYPE_CHECKING:
    from ..taskqueue import TaskQueue
    from .runner import Runner

log = logging.getLogger("diskqueue.worker")

MAX_SLEEP = 0.5
BATCH = 500
EXPIRE_EVERY = 5.0
MOVED_KEEP = 600.0  # seconds a "moved" marker outlives its schedule record


class Scheduler:
    def __init__(self, tasks: TaskQueue, runner: Runner, served: Callable[[], set[str]],
                 on_timeout: Optional[Callable[[Any], None]] = None,
                 on_pass: Optional[Callable[[], None]] = None) -> None:
        self.tasks = tasks
        self.runner = runner
        self.eng = tasks._engine()
        self.clock = tasks.clock
        self.served = served  # () -> names of the queues this worker serves
        self.on_timeout = on_timeout  # the pool's reaction to a run that timed out
        self.on_pass = on_pass
        self.shared = shared(tasks.path)
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self._last_tick: dict[str, float] = {}
        self._next_expire = 0.0
        self._thread = threading.Thread(target=self._loop, name="diskqueue-scheduler",
                                        daemon=True)

    def start(self) -> None:
        self.shared.wakers.add(self.wake)
        with self.shared.scheduling:
            self._load_ticks(self.clock())
        self.runner.counters.fold(self.eng, self.shared.scheduling)
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self.shared.wakers.discard(self.wake)
        self.runner.counters.flush_latency(self.eng)

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
        self.runner.counters.flush_latency(self.eng)
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
        while True:
            rows = self.eng.scan_records(R.NS_SCHED, stop=stop, limit=BATCH)
            for key, value in rows:
                key = bytes(key)
                queue, priority, was_scheduled = R.unpack(value)
                jid = key[8:]
                ops = [(R.NS_SCHED, key, None), (R.NS_MOVED, key, b"")]
                if was_scheduled:
                    raw = self.eng.get_record(R.NS_JOBS, jid)
                    if raw is not None:
                        rec = R.unpack(raw)
                        if rec["state"] == SCHEDULED:
                            rec["state"] = PENDING
                            ops.append((R.NS_JOBS, jid, R.pack(rec)))
                self.eng.push_unless(R.queue_ns(queue), [(R.lane_of(priority), jid)],
                                     (R.NS_MOVED, key), records=ops)
            if len(rows) < BATCH:
                break
        first = self.eng.scan_records(R.NS_SCHED, limit=1)
        return R.due_of(bytes(first[0][0])) if first else now + MAX_SLEEP

    # -- periodic tasks --------------------------------------------------------------
    def _periodic(self) -> list[TaskFunction]:
        served = self.served()
        return [t for t in self.tasks.registry.values()
                if t.periodic is not None and t.options.queue in served]

    def _load_ticks(self, now: float) -> None:
        """The last tick of each periodic task; a first start records ``now``."""
        for task in self._periodic():
            prefix = task.name.encode("utf-8") + b"\x00"
            rows = self.eng.scan_records(R.NS_TICK, start=prefix, stop=prefix[:-1] + b"\x01")
            if rows:
                self._last_tick[task.name] = R.due_of(bytes(rows[-1][0])[len(prefix):])
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
        jid = self.tasks._new_id()
        opts = task.options
        rec = {"id": jid, "task": task.name, "args": [], "kwargs": {}, "queue": opts.queue,
               "priority": opts.priority, "state": PENDING, "attempts": 0, "failures": 0,
               "enqueued": now, "ready": tick, "tick": tick}
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

    def _expired_job(self, key: bytes) -> list[tuple[bytes, bytes, Optional[bytes]]]:
        raw = self.eng.get_record(R.NS_JOBS, key[8:])
        if raw is not None:
            rec = R.unpack(raw)
            if rec["state"] == "success":
                return [(R.NS_JOBS, key[8:], None), *R.forget_retries(rec)]
        return []

    def _delete_before(self, ns: bytes, until: float, also: Callable[[bytes], list[Any]]
                       ) -> None:
        stop = (max(R.ms(until), 0) + 1).to_bytes(8, "big")
        while True:
            rows = self.eng.scan_records(ns, stop=stop, limit=BATCH)
            if not rows:
                return
            ops: list[tuple[bytes, bytes, Optional[bytes]]] = []
            for key, _ in rows:
                key = bytes(key)
                ops.append((ns, key, None))
                ops += also(key)
            self.eng.write_records(ops)
            if len(rows) < BATCH:
                return

    # -- timeouts (pools that cannot interrupt a run themselves) ---------------------
    def _reap_timeouts(self, mono: float) -> Optional[float]:
        if self.on_timeout is None:
            return None
        from .outcome import timed_out

        for run in self.runner.timed_out(mono):
            task = run.task
            assert task is not None and task.options.timeout is not None
            if self.runner.finish(run, timed_out(task.name, task.options.timeout)):
                log.warning("job %s (%s) ran past its timeout of %g s; its thread is "
                            "abandoned and replaced", run.job.id, task.name,
                            task.options.timeout)
                self.on_timeout(run)
        return self.runner.next_deadline()
