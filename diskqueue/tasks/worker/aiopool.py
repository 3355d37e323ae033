"""The async pool: ``async def`` tasks on one event loop, plain functions in threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Any, Optional

from ...errors import Closed
from . import outcome as O
from .runner import FETCH_WAIT, Run, Runner

log = logging.getLogger("diskqueue.worker")


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
        """Start the event loop's thread."""
        self.thread.start()

    def on_timeout(self, run: Run) -> None:
        """Never called: this pool ends a run past its timeout itself."""

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
                out = await runner.execute_async(run, lambda: self.cancelling)
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

    def join(self, deadline: float, interrupt: Optional[threading.Event] = None) -> list[Run]:
        """See :meth:`.pools.Pool.join`."""
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
                self.runner.cut_short(run)

    def close(self) -> None:
        """Shut the thread pools down, and close the loop once it ended."""
        self.executor.shutdown(wait=False)
        self.fetcher.shutdown(wait=False)
        if self.done.is_set():
            self.loop.close()
