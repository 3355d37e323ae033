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
    after the other; the ones not started when the worker stops go back to the front of
    their queue untouched. Weighted queues share the worker job by job: no batches.

    A thread cannot be interrupted, so a run past its ``timeout`` is finished as a
    ``JobTimeout`` by the scheduler thread, its thread is abandoned (its eventual result
    is dropped, and the rest of its batch goes back to the queue) and a new thread takes
    its place.
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

    def start(self) -> None:
        """Start the threads."""
        for _ in range(self.concurrency):
            self._spawn()

    def _spawn(self) -> None:
        thread = threading.Thread(target=self._slot, daemon=True,
                                  name=f"diskqueue-worker-{next(self._names)}")
        with self._lock:
            self.threads.add(thread)
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
                try:
                    going, run = self._step(pending, run)
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

    def _step(self, pending: deque[Lease], run: Optional[Run]) -> tuple[bool, Optional[Run]]:
        """Run ``run`` (else fetch a batch if needed and begin one job), finish it and,
        when the next job of the batch is at hand, begin that one in the same write.
        Returns False when this thread is done, and the job begun next."""
        runner = self.runner
        if run is None:
            if not pending:
                pending.extend(runner.fetch_batch(FETCH_WAIT, self.batch,
                                                  2 * self.concurrency))
            try:
                lease = pending.popleft()
            except IndexError:  # nothing came, or the batch was given back
                return True, None
            run = runner.begin(lease)  # (gives the job back if stopping)
            if run is None:
                return True, None
        try:
            out = runner.execute(run)
        except BaseException as exc:  # noqa: B036 - a hook around the task raised: a started
            out = O.failed(exc)  # job must still end in an outcome
        if pending and not runner.stopping.is_set():
            try:
                lease = pending.popleft()
            except IndexError:  # given back meanwhile (this run timed out)
                return runner.finish(run, out), None
            return runner.finish_and_begin(run, out, lease)
        return runner.finish(run, out), None

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
        if not self.runner.stopping.is_set():
            self._spawn()

    def join(self, deadline: float, interrupt: Optional[threading.Event] = None) -> list[Run]:
        """See :meth:`Pool.join`."""
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
