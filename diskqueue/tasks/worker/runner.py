"""Running one job: fetch, start, call, finish. Every pool is built from these steps.

Delivery: a job is reserved when fetched (it stays on disk, in flight), marked started,
and deleted only by the batch that also stores its outcome (``engine.ack`` with
records), so a process killed at any instant leaves every unfinished job in its queue.
A job fetched while the worker is stopping goes back to the front untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Optional

from ...errors import Closed, DiskQueueError, Empty, NotReserved
from .. import context
from .. import layout as R
from ..app import TaskApp
from ..job import DEAD, PENDING, RETRYING, STARTED, SUCCESS, Job
from ..options import DEFAULT_RESULT_TTL
from ..payload import CODED
from ..ratelimit import TokenBucket, parse_rate
from ..retry import Retry, backoff_delay
from ..stats import Counters
from ..task import TaskFunction
from . import joblog
from . import outcome as O
from .groupack import GroupAck

log = logging.getLogger("diskqueue.worker")

FETCH_WAIT = 0.25  # seconds a pool's fetch blocks before looking at the stop flag again

# (namespace, (lane, seq, key, data, attempts)) as engine.take_first returns it
Lease = tuple[bytes, tuple[bytes, int, bytes, bytes, int]]


class Run:
    """One job being run by this worker: its lease, record, task and deadline."""

    __slots__ = ("ns", "lane", "seq", "held", "jid", "record", "task", "deadline", "lock",
                 "finished", "job", "thread", "began", "duration", "ahead")

    def __init__(self, lease: Lease, record: dict[str, Any], task: Optional[TaskFunction],
                 tasks: TaskApp) -> None:
        self.ns, (self.lane, self.seq, _, jid, self.held) = lease
        self.jid = bytes(jid)
        self.record = record
        self.task = task
        self.deadline: Optional[float] = None  # time.monotonic() past which it timed out
        self.lock = threading.Lock()
        self.finished = False
        self.job: Job[Any] = Job(tasks, record["id"], record)
        self.thread = threading.current_thread()
        self.began = time.perf_counter()  # reset when the call itself starts
        self.duration: Optional[float] = None  # seconds the call took, once it ended
        # (record as read ahead, start latency): a start still to be written guarded
        self.ahead: Optional[tuple[bytes, float]] = None

    def took(self) -> float:
        """Seconds the call took (so far, when it has not ended: a timeout)."""
        if self.duration is not None:
            return self.duration
        return time.perf_counter() - self.began

    def end(self) -> bool:
        """Mark the run finished; False when it already was (someone else ends it)."""
        with self.lock:
            if self.finished:
                return False
            self.finished = True
            return True

    def cut_short(self) -> None:
        """Log that the run was still going at the end of the grace period (see
        :meth:`Runner.cut_short`, which also marks its job pending)."""
        log.warning("job %s (%s) was still running at the end of the grace period; "
                    "it will run again after a restart", self.job.id, self.record["task"])


def unknown_task(name: str, tasks: TaskApp) -> O.Outcome:
    """The outcome of a job whose task is not registered here: dead, not retried."""
    known = ", ".join(sorted(tasks.registry)) or "none"
    exc = LookupError(f"no task named {name!r} is registered in this worker "
                      f"(known tasks: {known})")
    return O.failed(exc, "", retryable=False, error_type="UnknownTask")


class Runner:
    """The steps of running the jobs of ``tasks``, shared by every pool's threads:
    fetch, begin, execute, finish (or release). ``fetch_order`` gives the queue
    namespaces to fetch from, in order. Raises ``Closed`` when the TaskQueue is closed."""

    def __init__(self, tasks: TaskApp, fetch_order: Callable[[], list[bytes]]) -> None:
        self.tasks = tasks
        self.store = tasks.store
        self.eng = self.store.engine()
        self.clock = self.store.clock
        self.hooks = tasks.hooks
        self.fetch_order = fetch_order
        self.stopping = threading.Event()
        # Runs in progress. Only set.add/discard/copy touch it: each is atomic under
        # the GIL, so the hot path takes no lock for it.
        self.active: set[Run] = set()
        self.counters = Counters()
        self.shared = self.store.shared
        self.rng = random.Random()
        self.finished = 0  # jobs that ended (success or dead) here
        self._count_lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._local = threading.local()  # each thread's packer of started records
        # Held around the disk steps of starting and finishing a job, when threads share
        # a runner: the engine's lock is held across disk calls that let go of the GIL,
        # and threads queueing for it there cost many more switches than queueing once
        # here per step. Hooks and the task itself always run outside it.
        self.disk: Any = contextlib.nullcontext()
        # When set, the acks of the threads sharing this runner are written together
        # (see groupack); the disk lock is then not used.
        self.group: Optional[GroupAck] = None
        # With a group (a client's threads): the records of the jobs of a batch, read
        # with it (one round trip), by job id; a start written from one is guarded.
        self.ahead: dict[bytes, bytes] = {}

    # -- fetch and start -------------------------------------------------------
    def fetch(self, timeout: float) -> Optional[Lease]:
        """Reserve the next job (waiting up to ``timeout`` on the engine's condition)."""
        try:
            lease: Lease = self.eng.take_first(self.fetch_order(), lease=math.inf,
                                                     block=True, timeout=timeout)
        except Empty:
            return None
        return lease

    def fetch_batch(self, timeout: float, most: int, share: int) -> list[Lease]:
        """Reserve up to ``most`` jobs at once from a deep queue, else one.

        A batch is taken only from the first queue (in fetch order) that has jobs, and
        only when it holds at least two for each of ``share`` takers, so a few jobs are
        never hoarded by one thread; it costs one disk write for the whole batch.
        """
        eng = self.eng
        if most > 1:
            for ns in self.fetch_order():
                ready = eng.length(ns)
                if ready >= 2 * share:
                    try:
                        entries = eng.take(ns, min(most, ready // share), lease=math.inf)
                    except Empty:
                        continue
                    leases = [(ns, tuple(entry)) for entry in entries]
                    if self.group is not None:
                        self._read_ahead(leases)  # type: ignore[arg-type]
                    return leases  # type: ignore[return-value]
                if ready:
                    break  # a few in this queue: one at a time keeps the strict order
        lease = self.fetch(timeout)
        return [] if lease is None else [lease]

    def _read_ahead(self, leases: list[Lease]) -> None:
        """Read the records of a batch's jobs in one call (a client's round trip each
        otherwise); a job whose record cannot be read so is read when it begins."""
        jids = [bytes(entry[3]) for _, entry in leases]
        try:
            found = self.eng.get_records(R.NS_JOBS, jids)
        except DiskQueueError:
            return
        ahead = self.ahead
        for jid, data in zip(jids, found, strict=True):
            if data is not None:
                ahead[jid] = data

    def give_back(self, lease: Lease) -> None:
        """Return a fetched job that was not started to the front of its queue."""
        ns, (lane, seq, _, jid, held) = lease
        if self.ahead:
            self.ahead.pop(bytes(jid), None)
        self._nack(ns, lane, seq, held)

    def begin(self, lease: Lease) -> Optional[Run]:
        """Mark a fetched job started; None when it is not to be run here after all."""
        with self.disk:
            run = self._begin(lease)
        if run is not None and run.task is None:
            self.finish(run, unknown_task(run.record["task"], self.tasks))
            return None
        if run is not None and log.isEnabledFor(logging.INFO):
            joblog.started(run)
        return run

    def _begin(self, lease: Lease, start: Optional[R.Ops] = None) -> Optional[Run]:
        """Mark a fetched job started (disk lock held). ``start``: the write of its
        started record is added there (to ride in the caller's batch) instead of made.

        A job whose record was read ahead (``self.ahead``) starts from that record, and
        its start is written only if the record is still that one (a guarded write; a
        second copy of the job may have ended meanwhile): with ``start``, the caller
        writes it so (``Run.ahead``); when it was not, the record is read again."""
        ns, (lane, seq, _, jid, held) = lease
        ahead = self.ahead.pop(bytes(jid), None) if self.ahead else None
        if self.stopping.is_set():
            self._nack(ns, lane, seq, held)
            return None
        if ahead is None:
            data = self.eng.get_record(R.NS_JOBS, bytes(jid))
            record = None if data is None else R.unpack(data)
        else:
            record = R.unpack(ahead)
        if record is None:
            log.warning("job %s has no record (purged?); dropping it", bytes(jid).decode())
            self._ack_lease(ns, lane, seq, held, [])
            return None
        if record["state"] in (SUCCESS, DEAD) and ahead is not None:
            return self._begin(lease, start)  # what the record says now decides
        if record["state"] in (SUCCESS, DEAD):  # a second copy of a finished job's entry
            log.warning("job %s is already %s; dropping a second copy of it", record["id"],
                        record["state"])
            self._ack_lease(ns, lane, seq, held, [])
            return None
        run = Run(lease, record, self.tasks.registry.get(record["task"]), self.tasks)
        if ahead is not None and (run.task is None or run.task.options.rate_limit is not None):
            return self._begin(lease, start)  # these write from the record: read it now
        if run.task is None:
            return run  # finished as dead by begin(), outside the disk lock
        now = self.clock()
        if run.task.options.rate_limit is not None and not self._rate_ok(run, now):
            return None
        record["state"] = STARTED
        record["attempts"] = record.get("attempts", 0) + 1
        record["started"] = now
        if "eta" in record or "progress" in record:
            record.pop("eta", None)
            record.pop("progress", None)
        latency = now - record.get("ready", now)
        if start is not None:
            # the thread's own packer (a record read from disk packs without error)
            try:
                pack = self._local.pack
            except AttributeError:
                pack = self._local.pack = R.packer()
            start.append((R.NS_JOBS, run.jid, pack(record)))
            if ahead is not None:
                run.ahead = (ahead, latency)  # counted once the caller wrote it (_ended)
        elif ahead is None:
            self.store.save(record)
        elif self.group is None or not self.group.guarded(
                (R.NS_JOBS, run.jid, ahead, [(R.NS_JOBS, run.jid, R.pack(record))])):
            return self._begin(lease)  # the record changed since it was read: read it
        if run.ahead is None:
            self.counters.started(record["queue"], latency)
        timeout = run.task.options.timeout
        if timeout is not None:
            run.deadline = time.monotonic() + timeout
        self.active.add(run)
        return run

    def _rate_ok(self, run: Run, now: float) -> bool:
        """Take a start from the task's bucket, or put the job back in the schedule at
        the slot reserved for it (so deferred jobs come back spread out, in order)."""
        task = run.task
        assert task is not None and task.options.rate_limit is not None
        slot = run.record.pop("rate_slot", None)
        if slot is not None and slot <= now + 0.05:
            return True  # it waited for a start reserved earlier
        bucket = self._buckets.get(task.name)
        if bucket is None:
            count, period = parse_rate(task.options.rate_limit)
            bucket = self._buckets.setdefault(task.name, TokenBucket(count, period, self.clock))
        wait = bucket.take()
        if wait <= 0:
            return True
        due = now + wait
        run.record["rate_slot"] = due
        run.end()
        self._ack(run, self._reschedule(run, due))
        self.shared.wake_schedulers()
        return False

    # -- call ------------------------------------------------------------------
    def report(self, run: Run, value: Any) -> None:
        """Store the progress a running task reported (ignored once it finished)."""
        with run.lock:
            if run.finished:
                return
            run.record["progress"] = value
            self.store.save(run.record)

    def execute(self, run: Run) -> O.Outcome:
        """Call the task in this thread (an ``async def`` task gets its own event loop).

        Whatever the task raises is its outcome, ``BaseException``s included: a task's
        own ``KeyboardInterrupt``, ``SystemExit``, ``CancelledError`` or
        ``GeneratorExit`` is a failure of the job (retried, then dead), never the end of
        the thread running it. (A real SIGINT reaches the main thread only, never a
        pool thread: the worker's own stop is not affected.)
        """
        with Call(self, run) as call:
            value = call.invoke()
            if value is not None and inspect.isawaitable(value):
                value = asyncio.run(self._bounded(value, call.timeout))
            call.out = O.success(value)
        return self.after_run(run, call.out)

    async def execute_async(self, run: Run, cancelled: Callable[[], bool]) -> O.Outcome:
        """Run an ``async def`` task on the running event loop, bounded by its timeout.

        Its outcome is what :meth:`execute` makes of it, except a ``CancelledError``
        while ``cancelled()`` is true: then the run was interrupted, and it is raised.
        """
        with Call(self, run, cancelled) as call:
            call.out = O.success(await asyncio.wait_for(O.contained(call.invoke()),
                                                        call.timeout))
        return self.after_run(run, call.out)

    @staticmethod
    async def _bounded(awaitable: Any, timeout: Optional[float]) -> Any:
        try:
            return await asyncio.wait_for(O.contained(awaitable), timeout)
        except asyncio.CancelledError as exc:
            # Nothing cancels this loop's only task: the task raised it itself (a timeout
            # comes out of wait_for as TimeoutError).
            raise O.Escaped(exc) from None

    def after_run(self, run: Run, out: O.Outcome) -> O.Outcome:
        """Note how long the call took; emit ``after_run`` for a call that ended in
        ``out``; returns ``out``."""
        if run.duration is None:  # (a child process measures its own call)
            run.duration = time.perf_counter() - run.began
        if self.hooks.wants("after_run"):
            self.hooks.emit("after_run", run.job, out.value, out.exc, duration=run.duration)
        return out

    # -- finish ----------------------------------------------------------------
    def finish(self, run: Run, out: O.Outcome) -> bool:
        """Store the outcome and delete the job in one batch; False if already finished."""
        if not run.end():
            return False
        self.active.discard(run)
        if out.ok:
            out, _ = self._succeed(run, out)
            if out.ok:
                return True
        self._fail(run, out)
        return True

    def finish_and_begin(self, run: Run, out: O.Outcome, lease: Lease
                         ) -> tuple[bool, Optional[Run]]:
        """:meth:`finish` ``run``, then :meth:`begin` the job of ``lease``: when ``run``
        succeeded, the next job's started record rides in the batch that stores the
        outcome (one disk write for both; a kill before it leaves the next job not
        started). Returns what :meth:`finish` returns and the next run (None: not run
        here)."""
        if not out.ok:
            if not self.finish(run, out):
                return self._replaced(lease)
            return True, self.begin(lease)
        if not run.end():
            return self._replaced(lease)
        self.active.discard(run)
        out, nxt = self._succeed(run, out, lease)
        if not out.ok:
            self._fail(run, out)
            return True, self.begin(lease)
        if nxt is not None and nxt.task is None:
            self.finish(nxt, unknown_task(nxt.record["task"], self.tasks))
            return True, None
        return True, nxt

    def _replaced(self, lease: Lease) -> tuple[bool, Optional[Run]]:
        """The run timed out meanwhile and its thread's place was taken: the next job
        goes back untouched, and the thread ends."""
        self.give_back(lease)
        return False, None

    def _succeed(self, run: Run, out: O.Outcome, then: Optional[Lease] = None
                 ) -> tuple[O.Outcome, Optional[Run]]:
        """Store a success (and begin ``then`` in the same batch); a result that
        cannot be stored is a failure, returned with nothing written or begun."""
        rec = run.record
        now = self.clock()
        rec["state"] = SUCCESS
        rec["finished"] = now
        if "error" in rec:
            del rec["error"]
        ttl = run.task.options.result_ttl if run.task else DEFAULT_RESULT_TTL
        data = b""
        try:
            self.store.payload.store_result(rec, out.value)
            if ttl != 0:
                data = R.pack(rec)
            elif rec["result"] is not None:
                # the record is deleted at once: only the result is checked (the rest
                # of the record came from disk)
                R.pack(rec["result"])
        except TypeError as exc:
            rec.pop("result", None)
            return O.failed(TypeError(f"the task's result cannot be stored: {exc}")), None
        ops: R.Ops = []
        if ttl == 0:
            ops.append((R.NS_JOBS, run.jid, None))
            if "deaths" in rec:  # (a job that died once has retry markers to forget)
                ops += R.forget_retries(rec)
        else:
            ops.append((R.NS_JOBS, run.jid, data))
            if ttl is not None:
                ops.append((R.NS_EXPIRE, R.ms_bytes(now + ttl) + run.jid, b""))
        nxt = self._ended(run, ops, ("done",), then)
        if log.isEnabledFor(logging.INFO):
            joblog.succeeded(run)
        return out, nxt

    def _ended(self, run: Run, ops: R.Ops, counts: tuple[str, ...],
               then: Optional[Lease] = None) -> Optional[Run]:
        """Store the end of a job (success or dead) with its counts, in one batch; with
        ``then``, begin that job and write its started record in the same batch."""
        nxt = None
        start: R.Ops = []
        with self.disk:
            if "unique" in run.record:
                ops = ops + self._release_unique(run.record)
            try:
                if then is not None:
                    nxt = self._begin(then, start)
            finally:  # the outcome is stored even when beginning the next job failed
                try:
                    if nxt is not None and nxt.ahead is not None:
                        guarded = nxt
                        stored = self.counters.counted(
                            run.record["queue"], counts,
                            lambda more: self._ack_and_start(run, ops + more, guarded, start))
                    else:
                        ops.append(self.counters.count(run.record["queue"], counts))
                        ops += start
                        stored = self._ack_lease(run.ns, run.lane, run.seq, run.held, ops)
                        if start and not stored:  # the outcome was not; the start is
                            self.store.write(start)
                except BaseException:
                    if nxt is not None:  # its start was not written: it was not started
                        self.release(nxt)
                    raise
            if nxt is not None and nxt.ahead is not None and then is not None:
                # its record changed since it was read: not started; read it again
                nxt.end()
                self.active.discard(nxt)
                nxt = self._begin(then)
        with self._count_lock:  # += is not atomic across threads
            self.finished += 1
        self.shared.notify_finished()
        return nxt

    def _fail(self, run: Run, out: O.Outcome) -> None:
        rec = run.record
        now = self.clock()
        rec["failures"] = rec.get("failures", 0) + 1
        rec["error"] = out.error
        options = run.task.options if run.task else None
        exc = out.exc or RuntimeError("failed")
        if out.retryable and options is not None and rec["failures"] <= options.retries:
            delay = out.retry_delay
            if delay is None:
                delay = backoff_delay(options.backoff, rec["failures"], options.max_backoff,
                                      self.rng)
            eta = now + delay
            rec.update(state=RETRYING, eta=eta, ready=eta)
            ops = self._reschedule(run, eta)
            with self.disk:
                self.counters.counted(rec["queue"], ("failed", "retried"),
                                      lambda more: self._ack(run, ops + more))
            self.shared.wake_schedulers()
            joblog.retrying(run, out, delay)
            if self.hooks.wants("on_retry"):
                self.hooks.emit("on_retry", run.job, exc, delay, duration=run.took())
            return
        # each death is numbered, so that retrying it is a one-time event (deadletters)
        rec.update(state=DEAD, finished=now, deaths=rec.get("deaths", 0) + 1)
        rec.pop("eta", None)
        dead_ops: R.Ops = [(R.NS_JOBS, run.jid, R.pack(rec)),
                           (R.NS_DEAD, R.dead_key(rec["queue"], run.jid), b"")]
        self._ended(run, dead_ops, ("failed", "dead_total"))
        joblog.died(run, out)
        if self.hooks.wants("on_dead"):
            self.hooks.emit("on_dead", run.job, exc, duration=run.took())

    @staticmethod
    def _reschedule(run: Run, due: float) -> R.Ops:
        """The writes that put a run's job back in the schedule, due at ``due``."""
        rec = run.record
        return [(R.NS_JOBS, run.jid, R.pack(rec)),
                (R.NS_SCHED, R.sched_key(due, run.jid),
                 R.sched_value(rec["queue"], rec["priority"], False))]

    def _release_unique(self, rec: dict[str, Any]) -> R.Ops:
        """The delete of the job's ``unique_key`` guard, when the job still holds it."""
        found = self.store.unique_guard(rec)
        if found is not None and found[1] == rec["id"].encode():
            return [(R.NS_UNIQUE, found[0], None)]
        return []

    def _ack(self, run: Run, ops: R.Ops) -> bool:
        return self._ack_lease(run.ns, run.lane, run.seq, run.held, ops)

    def _ack_and_start(self, run: Run, ops: R.Ops, nxt: Run, start: R.Ops) -> bool:
        """:meth:`_ack` ``run`` and, in the same batch, write the ``start`` of ``nxt``
        (begun from a record read ahead) if its record is still the one read: then
        ``nxt.ahead`` is cleared and its start counted. Returns what ``_ack`` does."""
        assert self.group is not None and nxt.ahead is not None
        expected, latency = nxt.ahead
        try:
            stored, landed = self.group.ack_and_start(
                (run.ns, run.lane, run.seq, run.held, ops),
                (R.NS_JOBS, nxt.jid, expected, start))
        except Closed as exc:
            log.warning("could not store the outcome of a job (%s); it will run again", exc)
            return False
        if landed:
            nxt.ahead = None
            self.counters.started(nxt.record["queue"], latency)
        if not stored:
            log.warning("could not store the outcome of a job (item %d is not reserved); "
                        "it will run again", run.seq)
        return stored

    def _ack_lease(self, ns: bytes, lane: bytes, seq: int, held: int,
                   ops: R.Ops) -> bool:
        """Delete a reserved job with ``ops`` in one batch; False when it was not."""
        try:
            if self.group is not None:
                if not self.group.ack((ns, lane, seq, held, ops)):
                    raise NotReserved(f"item {seq} is not reserved")
            else:
                self.eng.ack(ns, lane, seq, attempts=held, records=ops)
                if self.store.sync:
                    self.eng.sync()
        except (NotReserved, Closed) as exc:
            log.warning("could not store the outcome of a job (%s); it will run again", exc)
            return False
        return True

    # -- giving back -----------------------------------------------------------
    def release(self, run: Run) -> None:
        """Put a job that did not run to its end back at the front of its queue."""
        if not run.end():
            return
        self.active.discard(run)
        # pending again before it is back in its queue: once there, another worker may
        # take it and mark it started, which this write must not undo
        self._mark_pending(run)
        self._nack(run.ns, run.lane, run.seq, run.held)

    def cut_short(self, run: Run) -> None:
        """A run still going at the end of the grace period, left reserved: it runs
        again when the directory is next opened, so its record says ``pending`` (unless
        it finishes first: under the run's lock, as its finish takes that lock too)."""
        with run.lock:
            if not run.finished:
                self._mark_pending(run)
        run.cut_short()

    def _mark_pending(self, run: Run) -> None:
        run.record["state"] = PENDING  # in place: a later progress report keeps it
        try:
            self.store.save(run.record)
        except DiskQueueError as exc:
            log.warning("could not mark job %s pending (%s)", run.job.id, exc)

    def _nack(self, ns: bytes, lane: bytes, seq: int, held: int) -> None:
        try:
            self.eng.nack(ns, lane, seq, attempts=held, front=True)
        except DiskQueueError as exc:
            log.warning("could not return a job to its queue (%s); it runs again on the "
                        "next open", exc)

    def timed_out(self, now: float) -> list[Run]:
        """Running jobs whose deadline (``time.monotonic()``) has passed."""
        return [r for r in self.active.copy() if r.deadline is not None and r.deadline <= now]

    def next_deadline(self) -> Optional[float]:
        """The soonest deadline (``time.monotonic()``) of the running jobs, or None."""
        deadlines = [r.deadline for r in self.active.copy() if r.deadline is not None]
        return min(deadlines) if deadlines else None


class Call:
    """One call of a task, as a context manager: binds the job to the context, emits
    ``before_run`` inside it, and turns whatever the body raises into ``out``, the
    failure it stands for (a ``CancelledError`` while ``cancelled()`` is true is let
    through: the run was interrupted, not failed)."""

    __slots__ = ("runner", "run", "task", "timeout", "cancelled", "token", "out")
    out: O.Outcome  # set by the body, or by __exit__ from what the body raised

    def __init__(self, runner: Runner, run: Run,
                 cancelled: Optional[Callable[[], bool]] = None) -> None:
        task = run.task
        assert task is not None
        self.runner = runner
        self.run = run
        self.task = task
        self.timeout = task.options.timeout
        self.cancelled = cancelled

    def __enter__(self) -> Call:
        """Bind the job to the context (``current_job_id``, ``set_progress``)."""
        run, runner = self.run, self.runner
        self.token = context.bind(run.job.id, lambda value: runner.report(run, value))
        run.began = time.perf_counter()
        return self

    def invoke(self) -> Any:
        """``before_run``, then call the task's function with the job's arguments."""
        hooks = self.runner.hooks
        if hooks.wants("before_run"):
            hooks.emit("before_run", self.run.job)
        record = self.run.record
        if CODED in record:  # stored with a TaskQueue's codec= (see payload)
            args, kwargs = self.runner.store.payload.args_of(record)
            return self.task.fn(*args, **kwargs)
        return self.task.fn(*record.get("args", ()), **record.get("kwargs", {}))

    def __exit__(self, kind: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> bool:
        """Unbind the job; an exception from the body becomes ``out`` (True: swallowed)."""
        context.unbind(self.token)
        if exc is None:
            return False
        if (isinstance(exc, asyncio.CancelledError) and self.cancelled is not None
                and self.cancelled()):
            return False
        if isinstance(exc, Retry):
            self.out = O.failed(exc, retry_delay=exc.delay)
        elif isinstance(exc, asyncio.TimeoutError):
            self.out = O.timed_out(self.task.name, self.timeout or 0)
        elif isinstance(exc, O.Escaped):
            self.out = O.failed(exc.error)
        else:
            self.out = O.failed(exc)
        return True  # the failure is the outcome: never the end of the thread or loop
