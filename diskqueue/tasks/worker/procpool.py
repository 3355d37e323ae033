"""The process pool: each of ``concurrency`` slots owns one child process.

Children are started with the "spawn" context, so they share nothing with the parent's
LevelDB; they never open the directory. A child finds a task by name: through the
``--app module:attr`` TaskQueue when one is given, else by importing the task
function's module. The parent fetches, marks the job started, sends ``(job id, task,
args, kwargs)`` over a pipe, and stores the outcome; the child only calls the function.
A run past its ``timeout`` is ended by killing the child (SIGKILL), which is replaced.
Children ignore SIGINT and SIGTERM: a Ctrl-C or a service stop reaches the parent,
which lets the running jobs finish.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import multiprocessing
import signal
import sys
import threading
import time
import traceback
from typing import Any, Optional

from ...errors import Closed, DiskQueueError
from .. import context
from ..retry import Retry
from ..task import TaskFunction
from . import outcome as O
from .runner import FETCH_WAIT, Run, Runner

log = logging.getLogger("diskqueue.worker")


def locator(task: TaskFunction, app: Optional[str]) -> tuple[str, ...]:
    """How a child finds the task: through the ``app`` TaskQueue, else by its module
    and qualified name."""
    if app is not None:
        return ("app", app, task.name)
    return ("ref", task.fn.__module__, task.fn.__qualname__, task.name)


def _resolve(where: tuple[str, ...], cache: dict[tuple[str, ...], Any]) -> Any:
    fn = cache.get(where)
    if fn is not None:
        return fn
    if where[0] == "app":
        module, _, attr = where[1].partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        fn = obj.registry[where[2]].fn
    else:
        name = where[1]
        if name == "__main__" and "__mp_main__" in sys.modules:
            name = "__mp_main__"
        obj = importlib.import_module(name)
        for part in where[2].split("."):
            if part == "<locals>":
                raise LookupError(f"task {where[3]} is defined inside a function; the process "
                                  "pool needs tasks defined at module level (or pass app=)")
            obj = getattr(obj, part)
        fn = obj.fn if isinstance(obj, TaskFunction) else obj
    cache[where] = fn
    return fn


def child_main(conn: Any) -> None:
    """A child's loop: run what the parent sends until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cache: dict[tuple[str, ...], Any] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, where, args, kwargs = msg
        token = context.bind(job_id, lambda value: conn.send(("progress", value)))
        began = time.perf_counter()  # reset after the import: the duration is the call's
        try:
            fn = _resolve(where, cache)
            began = time.perf_counter()
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(_awaited(value))
            reply: tuple[Any, ...] = ("ok", value)
        except Retry as exc:
            reply = ("err", "Retry", O.describe(exc), traceback.format_exc(), exc.delay)
        except BaseException as exc:  # noqa: B036 - reported to the parent, never lost
            # (described safely: an error whose __str__ raises must not end the child)
            reply = ("err", type(exc).__name__, O.describe(exc), O.format_traceback(exc), None)
        finally:
            context.unbind(token)
        took = time.perf_counter() - began  # the last item of a reply
        try:
            conn.send((*reply, took))
        except Exception as exc:  # the value could not be pickled
            conn.send(("err", type(exc).__name__, f"the result cannot be sent back: {exc}",
                       traceback.format_exc(), None, took))


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class Child:
    """A child process running :func:`child_main`, and the pipe to it."""

    def __init__(self, ctx: Any) -> None:
        self.conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=child_main, args=(child_end,), daemon=True,
                                name="diskqueue-child")
        self.proc.start()
        child_end.close()

    def kill(self) -> None:
        """Kill the child (SIGKILL) and close the pipe."""
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def close(self) -> None:
        """Ask the child to end, wait for it (kill it after 5 s), close the pipe."""
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(5)
        self.kill()


class ProcessPool:
    """``concurrency`` slot threads, each with its own child process."""

    enforces_timeouts = True

    def __init__(self, runner: Runner, concurrency: int, app: Optional[str] = None) -> None:
        self.runner = runner
        self.concurrency = concurrency
        self.app = app
        self.ctx = multiprocessing.get_context("spawn")
        self.threads: list[threading.Thread] = []
        self.children: dict[threading.Thread, Child] = {}
        self.running: dict[threading.Thread, Run] = {}
        self.kill_now = threading.Event()
        self._lock = threading.Lock()
        runner.disk = threading.Lock()  # see Runner.disk

    def start(self) -> None:
        """Start the slot threads (each starts its child)."""
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._slot, name=f"diskqueue-slot-{i + 1}",
                                      daemon=True)
            self.threads.append(thread)
            thread.start()

    def _slot(self) -> None:
        me = threading.current_thread()
        child = Child(self.ctx)
        with self._lock:
            self.children[me] = child
        runner = self.runner
        try:
            while not runner.stopping.is_set():
                lease = runner.fetch(FETCH_WAIT)
                if lease is None:
                    continue
                run = runner.begin(lease)
                if run is None:
                    continue
                with self._lock:
                    self.running[me] = run
                child, out = self._run(child, run)
                with self._lock:
                    self.running.pop(me, None)
                    self.children[me] = child
                if out is None:
                    runner.release(run)
                else:
                    runner.finish(run, out)
        except Closed:
            pass
        except Exception:
            log.exception("process pool slot failed")
        finally:
            with self._lock:
                child = self.children.pop(me, child)
            child.close()

    def _run(self, child: Child, run: Run) -> tuple[Child, Optional[O.Outcome]]:
        """Run one job in ``child``; returns the child to use next and the outcome
        (None: interrupted at the end of the grace period)."""
        task = run.task
        assert task is not None
        hooks = self.runner.hooks
        if hooks.wants("before_run"):
            hooks.emit("before_run", run.job)
        run.began = time.perf_counter()
        try:
            args, kwargs = self.runner.store.payload.args_of(run.record)
        except DiskQueueError as exc:  # stored with another codec than this TaskQueue's
            return child, self.runner.after_run(run, O.failed(exc))
        try:
            child.conn.send((run.job.id, locator(task, self.app), args, kwargs))
        except (OSError, ValueError) as exc:
            child.kill()
            return Child(self.ctx), O.failed(exc)
        while True:
            wait = 0.1
            if run.deadline is not None:
                wait = min(wait, max(run.deadline - time.monotonic(), 0.0))
            if child.conn.poll(wait):
                try:
                    msg = child.conn.recv()
                except (EOFError, OSError):
                    code = child.proc.exitcode
                    child.kill()
                    lost = O.TaskError("WorkerLost", f"the child process running it died "
                                                     f"(exit code {code})")
                    return Child(self.ctx), self.runner.after_run(run, O.failed(lost, ""))
                if msg[0] == "progress":
                    self.runner.report(run, msg[1])
                    continue
                run.duration = msg[-1]  # as the child measured the call
                if msg[0] == "ok":
                    return child, self.runner.after_run(run, O.success(msg[1]))
                _, kind, text, tb, delay, _ = msg
                return child, self.runner.after_run(run, O.remote(kind, text, tb, delay))
            if run.deadline is not None and time.monotonic() >= run.deadline:
                child.kill()
                log.warning("job %s (%s) ran past its timeout of %g s; its child process "
                            "was killed and replaced", run.job.id, task.name,
                            task.options.timeout)
                return Child(self.ctx), self.runner.after_run(
                    run, O.timed_out(task.name, task.options.timeout or 0))
            if self.kill_now.is_set():
                child.kill()
                return child, None

    def on_timeout(self, run: Run) -> None:
        """Never called: this pool ends a run past its timeout itself."""

    def join(self, deadline: float, interrupt: Optional[threading.Event] = None) -> list[Run]:
        """See :meth:`.pools.Pool.join`."""
        for thread in self.threads:
            while thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0 or (interrupt is not None and interrupt.is_set()):
                    with self._lock:
                        return list(self.running.values())
                thread.join(min(left, 0.05))
        return []

    def abandon(self, runs: list[Run]) -> None:
        """Kill the children still running jobs; those jobs go back to the front."""
        self.kill_now.set()
        for thread in self.threads:
            thread.join(10)

    def close(self) -> None:
        """Nothing to free: each slot thread closed its child when it ended."""
