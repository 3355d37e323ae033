"""The thread pool and the async pool (the process pool is in :mod:`.procpool`).

A pool runs jobs with at most ``concurrency`` at a time. Its life: ``start()``; the
worker sets ``runner.stopping`` (no more fetching); ``join(deadline)`` waits for the
runs in progress and returns those still running at the deadline; ``abandon(runs)``
interrupts what can be interrupted and gives those jobs back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from typing import Any, Optional

from ...errors import Closed
from .. import context
from ..retry import Retry
from . import outcome as O
from .runner import Lease, Run, Runner

log = logging.getLogger("diskqueue.worker")

FETCH_WAIT = 0.25  # seconds a fetch blocks before looking at the stop flag again


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
        self.runner = runner
        self.concurrency = concurrency
        self.batch = batch
        runner.disk = threading.Lock()  # see Runner.disk
        self.threads: set[threading.Thread] = set()
        self.pending: dict[threading.Thread, deque[Lease]] = {}  # each thread's batch
        self._lock = threading.Lock()
        self._names = iter(range(1, 1 << 30))

    def start(self) -> None:
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
        try:
            while not runner.stopping.is_set():
                try:
                    if not self._step(pending):
                        return  # it timed out meanwhile: another thread took its place
                except Closed:
                    return
                except BaseException:  # noqa: B036 - a bug or a disk error: log it, keep
                    # the thread alive (its job, if any, was finished by _step)
                    log.exception("worker thread failed; going on in a moment")
                    runner.stopping.wait(0.5)
        finally:
            self._give_back(pending)
            self.pending.pop(me, None)
            with self._lock:
                self.threads.discard(me)

    def _step(self, pending: deque[Lease]) -> bool:
        """Fetch (a batch) if needed, then run one job; False if this thread is done."""
        runner = self.runner
        if not pending:
            pending.extend(runner.fetch_batch(FETCH_WAIT, self.batch, 2 * self.concurrency))
        try:
            lease = pending.popleft()
        except IndexError:  # nothing came, or the batch was given back
            return True
        run = runner.begin(lease)  # (gives the job back if stopping)
        if run is None:
            return True
        try:
            out = runner.execute(run)
        except BaseException as exc:  # noqa: B036 - a hook around the task raised: a started
            out = O.failed(exc)  # job must still end in an outcome
        return runner.finish(run, out)

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
        stuck = self.pending.get(run.thread)
        if stuck is not None:
            self._give_back(stuck)  # the rest of its batch must not wait for it
        if not self.runner.stopping.is_set():
            self._spawn()

    def join(self, deadline: float, interrupt: Optional[threading.Event] = None) -> list[Run]:
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
            log.warning("job %s (%s) was still running at the end of the grace period; "
                        "it will run again after a restart", run.job.id, run.record["task"])


class AsyncPool:
    """One event loop thread running ``async def`` tasks, at most ``concurrency`` at a
    time; plain functions run in a thread pool of the same size. Timeouts cancel the
    coroutine (a plain function's thread is abandoned, as in the thread pool)."""

    enforces_timeouts = True

    def __init__(self, runner: Runner, concurrency: int) -> None:
        self.runner = runner
        self.concurrency = concurrency
        self.loop = asyncio.new_event_loop()
        self.fetcher = concurrent.futures.ThreadPoolExecutor(1, "diskqueue-fetch")
        self.executor = concurrent.futures.ThreadPoolExecutor(concurrency, "diskqueue-sync")
        self.running: dict[asyncio.Task[Any], Run] = {}
        self.thread = threading.Thread(target=self._main, name="diskqueue-loop", daemon=True)
        self.done = threading.Event()
        # Set when abandon() cancels the runs left at the end of the grace period: only
        # then is a CancelledError a cancellation; else the task raised it itself.
        self.cancelling = False

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._dispatch())
        except BaseException:  # noqa: B036 - nothing may end this thread silently
            log.exception("the async pool failed")
        finally:
            self.done.set()

    async def _dispatch(self) -> None:
        runner = self.runner
        slots = asyncio.Semaphore(self.concurrency)
        while not runner.stopping.is_set():
            await slots.acquire()
            try:
                lease = await self.loop.run_in_executor(self.fetcher, runner.fetch, FETCH_WAIT)
            except (Closed, RuntimeError):  # closed, or the interpreter is shutting down
                slots.release()
                break
            run = runner.begin(lease) if lease is not None else None
            if run is None:
                slots.release()
                continue
            task = self.loop.create_task(self._run(run))
            self.running[task] = run
            task.add_done_callback(lambda t: self._done(t, slots))
        while self.running:
            await asyncio.wait(list(self.running))

    def _done(self, task: asyncio.Task[Any], slots: asyncio.Semaphore) -> None:
        self.running.pop(task, None)
        slots.release()

    async def _run(self, run: Run) -> None:
        runner = self.runner
        assert run.task is not None
        try:
            if run.task.is_async:
                out = await self._call_async(run)
            else:
                fut = self.loop.run_in_executor(self.executor, runner.execute, run)
                try:
                    out = await asyncio.wait_for(fut, run.task.options.timeout)
                except asyncio.TimeoutError:
                    out = O.timed_out(run.task.name, run.task.options.timeout or 0)
        except asyncio.CancelledError as exc:
            if self.cancelling:
                runner.release(run)  # interrupted at the end of the grace period
                raise
            out = O.failed(exc)  # raised by the task itself: a failure like any other
        except BaseException as exc:  # noqa: B036 - a hook or the executor: the started
            out = O.failed(exc)  # job must still end in an outcome
        runner.finish(run, out)

    async def _call_async(self, run: Run) -> O.Outcome:
        runner, task = self.runner, run.task
        assert task is not None
        if runner.hooks.wants("before_run"):
            runner.hooks.emit("before_run", run.job)
        token = context.bind(run.job.id, lambda value: runner.report(run, value))
        try:
            value = await asyncio.wait_for(
                O.contained(task.fn(*run.record.get("args", ()), **run.record.get("kwargs", {}))),
                task.options.timeout)
            out = O.success(value)
        except O.Escaped as wrapper:
            out = O.failed(wrapper.error)
        except Retry as exc:
            out = O.failed(exc, retry_delay=exc.delay)
        except asyncio.TimeoutError:
            out = O.timed_out(task.name, task.options.timeout or 0)
        except asyncio.CancelledError as exc:
            if self.cancelling:  # abandon() cancelled it: _run gives the job back
                raise
            out = O.failed(exc)  # the task raised it itself: a failure, with the backoff
        except BaseException as exc:  # noqa: B036 - a task's KeyboardInterrupt, SystemExit
            out = O.failed(exc)  # or GeneratorExit fails its job, never the event loop
        finally:
            context.unbind(token)
        runner._after_run(run, out)
        return out

    def join(self, deadline: float, interrupt: Optional[threading.Event] = None) -> list[Run]:
        while not self.done.wait(0.05):
            if time.monotonic() >= deadline or (interrupt is not None and interrupt.is_set()):
                return list(self.running.values())
        # normally none is left; any run still here was cut short by the loop's end
        return list(self.runner.active.copy())

    def abandon(self, runs: list[Run]) -> None:
        """Cancel the coroutines still running: their jobs go back to the front."""
        self.cancelling = True
        for task in list(self.running):
            self.loop.call_soon_threadsafe(task.cancel)
        self.done.wait(2.0)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.fetcher.shutdown(wait=False)
        for run in runs:
            if not run.finished:
                log.warning("job %s (%s) was still running at the end of the grace period; "
                            "it will run again after a restart", run.job.id, run.record["task"])

    def close(self) -> None:
        self.executor.shutdown(wait=False)
        self.fetcher.shutdown(wait=False)
        if self.done.is_set():
            self.loop.close()
