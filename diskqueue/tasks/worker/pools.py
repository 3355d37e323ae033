"""What a pool is (:class:`Pool`), and the thread pool. The async pool is in
:mod:`.aiopool`, the process pool in :mod:`.procpool`.

A pool runs jobs with at most ``concurrency`` at a time. Its life: ``start()``; the
worker sets ``runner.stopping`` (no more fetching); ``join(deadline)`` waits for the
runs in progress and returns those still running at the deadline; ``abandon(runs)``
interrupts what can be interrupted and gives those jobs back; ``close()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Optional, Protocol

from ...errors import Closed
from . import outcome as O
from .groupack import GroupAck
from .runner import FETCH_WAIT, Lease, Run, Runner

log = logging.getLogger("diskqueue.worker")

SPARE_CHECK = 0.001  # seconds between two looks of a thread pool's lookout
QUIET_LOOKS = 20  # looks that saw no job begin, before the lookout waits for one
BUSY = 0.5  # share of their time the working threads spend in calls: more threads work
IDLE = 0.1  # ... under which one fewer works
BUSY_LOOKS = 2  # looks in a row that find them busy before more start
LONG_CALL = 0.01  # seconds in a call after which other threads take the rest of its batch
# A job whose call takes less than this (on average) costs the worker holding the
# directory less to run than to hand to another process's worker (see _wants_jobs).
CLIENT_WORTH = 0.0001


class Pool(Protocol):
    """Runs the jobs a :class:`~.runner.Runner` fetches, at most ``concurrency`` at a time."""

    # True when the pool ends a run past its timeout itself; else the scheduler finishes
    # it as timed out and calls on_timeout().
    enforces_timeouts: bool

    def start(self) -> None:
        """Start fetching and running jobs, in threads of its own."""

    def on_timeout(self, run: Run) -> None:
        """The scheduler finished ``run`` as timed out (pools that do not enforce
        timeouts): replace what was running it."""

    def join(self, deadline: float, interrupt: Optional[threading.Event] = None
             ) -> list[Run]:
        """Wait (after ``runner.stopping`` was set) until the runs in progress are done,
        ``time.monotonic()`` passes ``deadline`` or ``interrupt`` is set; returns the runs
        still in progress."""

    def abandon(self, runs: list[Run]) -> None:
        """Interrupt what can be interrupted of ``runs`` and give those jobs back."""

    def close(self) -> None:
        """Free what the pool holds, after :meth:`join` (and :meth:`abandon`)."""


class ThreadPool:
    """``concurrency`` threads, each fetching and running one job at a time.

    When a queue holds many more jobs than there are threads, a thread reserves up to
    ``BATCH`` of them at once (one disk write instead of one each) and starts them one
    after the other; when it has been in a job's call for 10 ms, a thread that has no
    job takes the first half of the rest of that batch before it fetches from the
    queue, so a long job does not hold up the rest of its batch. The ones not started
    when the worker stops go back to the front of their queue untouched. Weighted queues
    share the worker job by job: no batches.

    A thread cannot be interrupted, so a run past its ``timeout`` is finished as a
    ``JobTimeout`` by the scheduler thread, its thread is abandoned (its eventual result
    is dropped, and the rest of its batch goes back to the queue) and a new thread takes
    its place.

    Threads join in as they are needed (when the worker holds the directory): one thread
    starts working and the others wait their turn. A lookout thread looks at the
    working ones every millisecond while jobs begin: when they spent at least half of
    that time inside their jobs' calls (twice in a row), as many more threads start
    working as work now (1, 2, 4... up to ``concurrency``); under a tenth, one of them
    goes back to waiting once its batch is done. A thread whose fetch found nothing
    also goes back to waiting, unless it is the last one working. Why: threads that
    take turns on a stream of short jobs hand the GIL (and the disk) to each other at
    every LevelDB call, and on two cores each hand-over wakes a thread on the other
    core: four threads draining no-op jobs spent about 35 us of CPU per job, one thread
    alone 19. Jobs that wait (I/O, sleeps, locks) or run long still get every thread, a
    few milliseconds later. A client's threads all work: their acks go together in one
    round trip, and its waits are on the holder.
    """

    BATCH = 16

    enforces_timeouts = False

    def __init__(self, runner: Runner, concurrency: int, batch: int = BATCH) -> None:
        """``batch``: the most jobs a thread reserves at once."""
        self.runner = runner
        self.concurrency = concurrency
        self.batch = batch
        if runner.eng.role == "client":
            # each ack is a round trip to the owner: the acks of the threads that end
            # their jobs meanwhile go together in one (see groupack)
            runner.group = GroupAck(runner.eng, runner.store.sync)
        else:
            runner.disk = threading.Lock()  # see Runner.disk
        self.threads: set[threading.Thread] = set()
        self.pending: dict[threading.Thread, deque[Lease]] = {}  # each thread's batch
        self._lock = threading.Lock()
        self._names = iter(range(1, 1 << 30))
        self.calling: dict[threading.Thread, float] = {}  # thread: when its call began
        self.busy: dict[threading.Thread, float] = {}  # thread: seconds in calls so far
        # spare threads (see the class docstring); the set changes under _turns
        self.spares = runner.group is None and concurrency > 1
        self.working: set[threading.Thread] = set()
        self._turns = threading.Condition(threading.Lock())
        self._waiting = 0  # threads waiting their turn
        self._wanted = 0  # of them, asked to start working
        self._surplus = 0  # working threads asked to stop
        self._begun = 0  # calls begun (the lookout sees whether jobs are flowing)
        self._dozing = False  # the lookout waits for _alarm instead of looking
        self._alarm = threading.Event()
        self._lookout: Optional[threading.Thread] = None
        self.call_time = 0.0  # seconds in a job's call, a moving average
        self._served: list[bytes] = []  # queues whose short jobs are kept from clients

    def start(self) -> None:
        """Start the threads."""
        for i in range(self.concurrency):
            self._spawn(working=i == 0 or not self.spares)
        if self.spares:
            self._lookout = threading.Thread(target=self._look_out, daemon=True,
                                             name="diskqueue-lookout")
            self._lookout.start()
        served = sorted(set(self.runner.fetch_order()))
        if self.runner.eng.serve_own_first(served, self._wants_jobs):
            self._served = served

    def _wants_jobs(self) -> bool:
        """Whether the jobs of this pool's queues are kept from other processes'
        workers (this one holds the directory): while their calls are short. The holder
        serves every disk call of a job another process runs, and that costs it about
        50 us of CPU, more than the whole of a no-op job it runs itself (20 us): two
        worker processes drained short jobs at half the rate of one. From calls of about
        0.1 ms, the other process's core adds more than the holder's serving takes away;
        and once a thread here has been in one call for ``LONG_CALL``, the short jobs
        before it say nothing of the ones now (a long one may hold every thread).
        (Called under the engine's lock: reads only.)"""
        if self.call_time >= CLIENT_WORTH or self.runner.stopping.is_set():
            return False
        now = time.monotonic()
        return all(now - began < LONG_CALL for began in list(self.calling.values()))

    def _spawn(self, working: bool = True) -> None:
        thread = threading.Thread(target=self._slot, daemon=True,
                                  name=f"diskqueue-worker-{next(self._names)}")
        with self._lock:
            self.threads.add(thread)
        if working:
            with self._turns:
                self.working.add(thread)
        thread.start()

    def _slot(self) -> None:
        runner = self.runner
        me = threading.current_thread()
        pending: deque[Lease] = deque()
        self.pending[me] = pending
        run: Optional[Run] = None  # begun, to be run next
        try:
            # a run begun is run even when the stop came meanwhile: it counts as started
            while run is not None or not runner.stopping.is_set():
                if run is None and me not in self.working:
                    self._wait_turn(me)
                    continue
                try:
                    going, run = self._step(me, pending, run)
                    if not going:
                        return  # it timed out meanwhile: another thread took its place
                except Closed:
                    return
                except BaseException:  # noqa: B036 - a bug or a disk error: log it, keep
                    # the thread alive (its job, if any, was finished by _step)
                    log.exception("worker thread failed; going on in a moment")
                    run = None
                    runner.stopping.wait(0.5)
        finally:
            self._give_back(pending)
            self.pending.pop(me, None)
            with self._lock:
                self.threads.discard(me)
            with self._turns:
                self.working.discard(me)
                self.busy.pop(me, None)

    def _step(self, me: threading.Thread, pending: deque[Lease], run: Optional[Run]
              ) -> tuple[bool, Optional[Run]]:
        """Run ``run`` (else fetch a batch if needed and begin one job), finish it and,
        when the next job of the batch is at hand, begin that one in the same write.
        Returns False when this thread is done, and the job begun next."""
        runner = self.runner
        if run is None:
            if not pending:
                if self._surplus and self._rest(me, surplus=True):
                    return True, None
                if not self._steal(me, pending):
                    pending.extend(runner.fetch_batch(FETCH_WAIT, self.batch,
                                                      2 * self.concurrency))
                    if not pending and self.spares:
                        self._rest(me)
            try:
                lease = pending.popleft()
            except IndexError:  # nothing came, or the batch was given back
                return True, None
            run = runner.begin(lease)  # (gives the job back if stopping)
            if run is None:
                return True, None
        began = self.calling[me] = time.monotonic()
        self._begun += 1
        if self._dozing:
            self._alarm.set()
        try:
            out = runner.execute(run)
        except BaseException as exc:  # noqa: B036 - a hook around the task raised: a started
            out = O.failed(exc)  # job must still end in an outcome
        took = time.monotonic() - began
        self.busy[me] = self.busy.get(me, 0.0) + took
        self.call_time += (took - self.call_time) * 0.05
        self.calling.pop(me, None)  # (on_timeout may have dropped it)
        if pending and not runner.stopping.is_set():
            try:
                lease = pending.popleft()
            except IndexError:  # given back meanwhile (this run timed out)
                return runner.finish(run, out), None
            return runner.finish_and_begin(run, out, lease)
        return runner.finish(run, out), None

    def _steal(self, me: threading.Thread, pending: deque[Lease]) -> bool:
        """Move the first half of the batch of a thread that has been in a call for
        ``LONG_CALL`` seconds to ``pending``: the rest of a batch must not wait behind a
        long job while another thread could run it (and it comes before what the queue
        holds now). Whether any was moved."""
        calling = self.calling
        now = time.monotonic()
        for thread, theirs in list(self.pending.items()):
            began = calling.get(thread)
            if thread is me or not theirs or began is None or now - began < LONG_CALL:
                continue
            for _ in range((len(theirs) + 1) // 2):
                try:
                    pending.append(theirs.popleft())
                except IndexError:  # (its thread took the last one meanwhile)
                    break
            if pending:
                return True
        return False

    # -- spare threads ---------------------------------------------------------
    def _rest(self, me: threading.Thread, surplus: bool = False) -> bool:
        """``me`` found no job (``surplus``: the lookout asked one thread to stop): it
        waits its turn from now on, unless it is the last one working. Whether it does."""
        with self._turns:
            if surplus:
                if not self._surplus:
                    return False
                self._surplus -= 1
            if len(self.working) > 1:
                self.working.discard(me)
                return True
            return False

    def _wait_turn(self, me: threading.Thread) -> None:
        """Wait until ``me`` is to work (or the pool stops)."""
        stopping = self.runner.stopping
        with self._turns:
            self._waiting += 1
            try:
                while not stopping.is_set():
                    if self._wanted:
                        self._wanted -= 1
                        self.working.add(me)
                        return
                    self._turns.wait(FETCH_WAIT)
            finally:
                self._waiting -= 1

    def _look_out(self) -> None:
        """The lookout's thread: look at the working threads every ``SPARE_CHECK``
        seconds while jobs begin (else wait for a job to begin), and start or stop
        threads as :meth:`_change` says."""
        stopping = self.runner.stopping
        quiet = 0  # looks in a row that saw no job begin
        busy = 0  # looks in a row that found the working threads busy
        last: dict[threading.Thread, float] = {}
        since = time.monotonic()
        while not stopping.is_set():
            seen = self._begun
            if quiet >= QUIET_LOOKS:
                self._dozing = True
                if self._begun == seen:  # (else a job began as it started dozing)
                    self._alarm.wait(FETCH_WAIT)
                self._alarm.clear()
                self._dozing = False
            else:
                time.sleep(SPARE_CHECK)
            quiet = quiet + 1 if self._begun == seen else 0
            change = self._change(last, since)
            since = time.monotonic()
            busy = busy + 1 if change > 0 else 0
            if 0 < busy < BUSY_LOOKS:
                continue  # (one busy look may be a thread the machine held up in a call)
            if change:
                with self._turns:
                    if change > 0:
                        busy = 0
                        self._surplus = 0
                        self._wanted += change
                        self._turns.notify(change)
                    elif len(self.working) - self._surplus > 1:
                        self._surplus += 1

    def _change(self, last: dict[threading.Thread, float], since: float) -> int:
        """How many threads are to start working (a negative number: to stop) after the
        look at the working threads since the last one (at ``since``): as many more as
        work now when they spent at least ``BUSY`` of that time in calls, one fewer when
        under ``IDLE``. ``last``: each working thread's time in calls at the last look,
        updated here."""
        with self._turns:
            working = list(self.working)
            waiting = self._waiting - self._wanted
        now = time.monotonic()
        if not working:
            return min(1, waiting)
        calling, busy = self.calling, self.busy
        before = dict(last)
        last.clear()
        spent, seen = 0.0, 0
        for thread in working:
            began = calling.get(thread)
            total = last[thread] = busy.get(thread, 0.0) + (
                0.0 if began is None else now - began)
            if thread in before:  # (a thread that just started working is seen next time)
                spent += total - before[thread]
                seen += 1
        if not seen or now <= since:
            return 0
        share = spent / (seen * (now - since))
        if share >= BUSY:
            return min(len(working), waiting)
        if share < IDLE and len(working) > 1:
            return -1
        return 0

    def _give_back(self, pending: deque[Lease]) -> None:
        while True:
            try:
                lease = pending.popleft()
            except IndexError:
                return
            try:
                self.runner.give_back(lease)
            except Closed:
                return

    def on_timeout(self, run: Run) -> None:
        """Give back the rest of the stuck thread's batch, and start a thread in its
        place."""
        stuck = self.pending.get(run.thread)
        if stuck is not None:
            self._give_back(stuck)  # the rest of its batch must not wait for it
        with self._turns:  # the new thread works in its place
            self.working.discard(run.thread)
            self.calling.pop(run.thread, None)
        if not self.runner.stopping.is_set():
            self._spawn()

    def join(self, deadline: float, interrupt: Optional[threading.Event] = None) -> list[Run]:
        """See :meth:`Pool.join`."""
        if self._served:  # what is left is for clients' workers
            self.runner.eng.serve_own_first(self._served, None)
            self._served = []
        with self._turns:  # waiting threads end at once
            self._turns.notify_all()
        self._alarm.set()
        if self._lookout is not None:
            # (it ends within a look; the deadline may be infinite)
            self._lookout.join(min(max(0.0, deadline - time.monotonic()), FETCH_WAIT))
        while True:
            with self._lock:
                alive = [t for t in self.threads if t.is_alive()]
            if not alive:  # normally none is left; any run still here was cut short
                return list(self.runner.active.copy())
            left = deadline - time.monotonic()
            if left <= 0 or (interrupt is not None and interrupt.is_set()):
                return list(self.runner.active.copy())
            alive[0].join(min(left, 0.05))

    def abandon(self, runs: list[Run]) -> None:
        """Threads cannot be stopped: their jobs stay reserved and, unless they still
        finish, run again when the directory is next opened."""
        for run in runs:
            self.runner.cut_short(run)

    def close(self) -> None:
        """Nothing to free: the threads ended (or were abandoned) in :meth:`join`."""
