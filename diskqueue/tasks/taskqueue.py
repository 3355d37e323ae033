"""``TaskQueue``: register tasks, enqueue calls, manage dead letters, start workers.

A TaskQueue is a directory of structure kind ``"tasks"`` (see :mod:`.layout` for the
layout), held by a :class:`~.jobstore.JobStore` that opens it lazily, on first use, so
importing the module that defines the tasks has no side effect. The TaskQueue is the
public entry point on top: the other task modules use the store, never the TaskQueue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Optional, ParamSpec, TypeVar, overload

from . import deadletters
from . import layout as R
from .enqueue import Enqueuer, split_call
from .job import Job
from .jobstore import Engine, JobStore
from .middleware import Hooks
from .options import DEFAULT_RESULT_TTL, TaskOptions
from .payload import Payload
from .periodic import Periodic
from .stats import collect
from .task import AsyncTaskFunction, TaskDecorator, TaskFunction, make_task
from .worker.runloop import run_until_stopped
from .worker.worker import Worker

__all__ = ["DEFAULT_CONCURRENCY", "TaskQueue", "split_call"]

DEFAULT_CONCURRENCY = 4

P = ParamSpec("P")
T = TypeVar("T")  # a task's result (R is the layout module here)


class TaskQueue:
    """Tasks and their jobs in one directory.

    ``clock`` (a function returning epoch seconds, default ``time.time``, or an object
    with such a ``time()`` method) drives delays,
    backoff, periodic ticks and rate limits, so tests can move time; ``sync=True`` makes
    every enqueue and every finished job survive power loss; ``middleware`` is a list of
    :class:`~diskqueue.tasks.Middleware`; ``connect_timeout`` (seconds, default 10) bounds
    the wait for another process holding the directory that does not answer; ``codec``
    stores the jobs' arguments and results: None (or ``"msgpack"``) for msgpack with
    tuples, sets, dates and times, Decimal and UUID (see
    :data:`~diskqueue.codecs.TASK_MSGPACK`), or ``"json"``, ``"pickle"``, or any object
    with ``dumps(obj) -> bytes`` and ``loads(bytes)``. Producers and workers of a
    directory must use the same codec.
    """

    def __init__(self, path: Any, *, clock: Optional[Callable[[], float]] = None,
                 sync: bool = False, middleware: Iterable[Any] = (),
                 connect_timeout: float = 10.0, codec: Any = None) -> None:
        """Raises TypeError or ValueError for a bad argument (nothing is opened yet)."""
        self.store = JobStore(path, clock=time.time, sync=False,
                              connect_timeout=connect_timeout)
        self.store.payload = Payload(codec)
        if clock is not None and not callable(clock):
            clock = getattr(clock, "time", None)  # an object with .time() will do too
            if not callable(clock):
                raise TypeError("clock must be a function returning epoch seconds")
        self.store.clock = clock or time.time
        if not isinstance(sync, bool):
            raise TypeError(f"sync must be a bool, not {type(sync).__name__}")
        self.store.sync = sync
        self.registry: dict[str, TaskFunction[..., Any]] = {}
        self.hooks = Hooks()
        for m in middleware:
            self.hooks.add(m)
        self._enqueuer = Enqueuer(self.store, self.hooks)
        self._workers: list[Worker] = []  # started here and not stopped yet

    # -- the directory ---------------------------------------------------------
    @property
    def path(self) -> str:
        """The directory."""
        return self.store.path

    @property
    def clock(self) -> Callable[[], float]:
        """The function giving epoch seconds for delays, backoff, ticks, rate limits."""
        return self.store.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.store.clock = clock

    @property
    def sync(self) -> bool:
        """True: every enqueue and every finished job is synced to disk."""
        return self.store.sync

    @sync.setter
    def sync(self, sync: bool) -> None:
        self.store.sync = sync

    def set_path(self, path: Any) -> None:
        """Point this TaskQueue at another directory; only before it is first used
        (RuntimeError after)."""
        self.store.set_path(path)

    # the engine and a record, as the store gives them (for looking inside in tests)
    def _engine(self) -> Engine:
        return self.store.engine()

    def _read_job(self, job_id: str) -> Optional[dict[str, Any]]:
        return self.store.read(job_id)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self.store.closed

    def close(self) -> None:
        """Stop this TaskQueue's workers (30 s grace), then close the directory."""
        for worker in list(self._workers):
            worker.stop(timeout=30)
        self.store.close()

    def __enter__(self) -> TaskQueue:
        """The TaskQueue itself; leaving the block closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the TaskQueue."""
        self.close()

    def __repr__(self) -> str:
        """``<TaskQueue 'path' N tasks>``."""
        return f"<TaskQueue {self.path!r} {len(self.registry)} tasks>"

    # -- registering -----------------------------------------------------------
    # Typed (see :mod:`.task`): ``@tasks.task``, ``tasks.task(fn, **options)`` (its
    # options checked when it runs), or ``@tasks.task(**options)`` (options typed too).
    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, T]], /, **options: Any
             ) -> AsyncTaskFunction[P, T]: ...

    @overload
    def task(self, fn: Callable[P, T], /, **options: Any) -> TaskFunction[P, T]: ...

    @overload
    def task(self, fn: None = None, /, *, name: Optional[str] = None, retries: int = 0,
             backoff: float = 1.0, max_backoff: float = 3600.0,
             timeout: Optional[float] = None, queue: str = "default", priority: int = 0,
             rate_limit: Optional[str] = None,
             result_ttl: Optional[float] = DEFAULT_RESULT_TTL) -> TaskDecorator: ...

    def task(self, fn: Optional[Callable[..., Any]] = None, /, *,
             name: Optional[str] = None, **options: Any) -> Any:
        """Register a function as a task (usable as ``@tasks.task`` or ``@tasks.task(...)``).

        ``retries``: attempts after the first failure; ``backoff``: seconds before the
        first retry, doubling each time up to ``max_backoff``, with jitter; ``timeout``:
        seconds a run may take; ``queue`` and ``priority`` (higher runs first): where its
        jobs go by default; ``rate_limit``: starts per period in each worker process,
        such as ``"100/m"``; ``result_ttl``: seconds a finished job's record (and result)
        is kept (None: for ever, 0: not at all). The name defaults to the function's.
        Raises TypeError for an unknown option, TypeError or ValueError for a bad value.
        """
        task_options = TaskOptions(**options)

        def register(func: Callable[..., Any]) -> TaskFunction[..., Any]:
            return self._register(func, name, task_options, None)

        return register(fn) if fn is not None else register

    def periodic(self, every: Any = None, *, cron: Optional[str] = None,
                 name: Optional[str] = None, **options: Any) -> TaskDecorator:
        """Register a function of no arguments to run every ``every`` seconds (or
        timedelta; ticks are aligned to the epoch) or on a 5-field ``cron`` schedule
        (local time; ``periodic("*/5 * * * *")`` is the same as ``cron=``). Takes the
        options of :meth:`task`."""
        if isinstance(every, str) and cron is None:
            every, cron = None, every
        schedule = Periodic(every, cron)
        task_options = TaskOptions(**options)

        def register(func: Callable[..., Any]) -> TaskFunction[..., Any]:
            return self._register(func, name, task_options, schedule)

        return register  # type: ignore[return-value]

    def _register(self, fn: Callable[..., Any], name: Optional[str], options: TaskOptions,
                  periodic: Optional[Periodic]) -> TaskFunction[..., Any]:
        if not callable(fn):
            raise TypeError(f"a task must be a function, not {type(fn).__name__}")
        name = name if name is not None else getattr(fn, "__name__", None)
        if not isinstance(name, str) or not name:
            raise TypeError("a task needs a name: pass name=")
        if name in self.registry and self.registry[name].fn is not fn:
            raise ValueError(f"a task named {name!r} is already registered on {self!r}")
        task = make_task(self._enqueuer, fn, name, options, periodic)
        self.registry[name] = task
        return task

    def add_middleware(self, middleware: Any) -> None:
        """Add a middleware (raises TypeError when it defines none of the hooks)."""
        self.hooks.add(middleware)

    # -- enqueue ---------------------------------------------------------------
    def enqueue(self, name: str, *args: Any, **kwargs: Any) -> Job:
        """Enqueue a call of the task ``name``, which need not be registered here (its
        registered queue and priority apply when it is, else ``"default"`` and 0).
        Raises TypeError or ValueError for a bad name or arguments (nothing is written)."""
        task, options = self._target(name)
        return self._enqueuer.call(task, options, args, kwargs)

    async def aenqueue(self, name: str, *args: Any, **kwargs: Any) -> Job:
        """``enqueue`` for asyncio (one short write, made on the loop: docs/asyncio.md)."""
        return self.enqueue(name, *args, **kwargs)

    def apply(self, name: str, args: Any = (), kwargs: Optional[dict[str, Any]] = None,
              **options: Any) -> Job:
        """``enqueue`` by name with ``TaskFunction.apply``'s options; raises as it does."""
        task, task_options = self._target(name)
        return self._enqueuer.one(task, task_options, args, kwargs or {}, **options)

    def _target(self, name: Any) -> tuple[str, Optional[TaskOptions]]:
        """The task's name and, when it is registered here, its options."""
        if not isinstance(name, str):
            raise TypeError(f"a task name is a str, not {type(name).__name__}")
        if not name:
            raise ValueError("a task name cannot be empty")
        found = self.registry.get(name)
        return name, (found.options if found is not None else None)

    def enqueue_many(self, name: str, calls: Iterable[Any], *,
                     queue: Optional[str] = None, priority: Optional[int] = None,
                     delay: Any = None, eta: Any = None) -> list[Job]:
        """Enqueue many calls of one task atomically (all or none), in one write.

        Each call is an ``(args, kwargs)`` pair, ``((1, 2), {"x": 4})``, or a tuple of
        positional arguments, ``(1, 2)``, or one argument, ``5`` (see :func:`split_call`).
        Raises TypeError or ValueError for a bad name, call or option (nothing is written).
        """
        task, options = self._target(name)
        return self._enqueuer.many(task, options, calls, queue=queue, priority=priority,
                                   delay=delay, eta=eta)

    # -- jobs ------------------------------------------------------------------
    def job(self, job_id: str) -> Job:
        """The Job with this id (``UnknownJob`` when there is none)."""
        if not isinstance(job_id, str):
            raise TypeError(f"a job id is a str, not {type(job_id).__name__}")
        job: Job[Any] = Job(self, job_id)
        job.info()
        return job

    def pending(self, queue: Optional[str] = None, limit: int = 20) -> list[Job]:
        """The next jobs waiting in a queue (all queues: each in turn), without taking them."""
        eng = self.store.engine()
        names = [queue] if queue is not None else self.queue_names()
        out: list[Job] = []
        for name in names:
            for entry in eng.scan(R.queue_ns(name), limit=max(limit - len(out), 0)):
                out.append(Job(self, bytes(entry[3]).decode()))
            if len(out) >= limit:
                break
        return out

    def scheduled(self, limit: int = 20) -> list[Job]:
        """Jobs waiting for their time (delayed or awaiting a retry), soonest first."""
        rows = self.store.engine().scan_records(R.NS_SCHED, limit=limit)
        return [Job(self, bytes(key[8:]).decode()) for key, _ in rows]

    def queue_names(self) -> list[str]:
        """Queues of registered tasks, then any other queue the directory holds."""
        names = list(dict.fromkeys(t.options.queue for t in self.registry.values()))
        on_disk = sorted(ns[2:] for ns in self.store.engine().info() if ns.startswith("q:"))
        return names + [n for n in on_disk if n not in names]

    # -- dead letters ----------------------------------------------------------
    def dead(self) -> list[Job]:
        """Dead jobs, the most recent first."""
        return deadletters.dead(self)

    def retry_dead(self, job_id: Optional[str] = None) -> int:
        """Put one dead job (or all of them: ``None``) back in its queue, failures reset,
        with its ``unique_key`` (unless another job took the key meanwhile). Each job
        moves once per death, however many calls race (threads or processes): returns
        how many this call moved."""
        return deadletters.retry(self, job_id)

    def purge_dead(self, job_id: Optional[str] = None) -> int:
        """Delete one dead job (or all: ``None``) for good, in one batch. Returns how many."""
        return deadletters.purge(self, job_id)

    # -- stats -----------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, Any]]:
        """Per queue: ``depth`` (ready), ``scheduled``, ``in_flight``, ``dead``, ``done``,
        ``failed`` (failed runs), ``retried``, ``latency_p50_ms``/``latency_p99_ms``
        (enqueue, or due time, to start)."""
        return collect(self.store, self.queue_names(),
                       [w.counters for w in self._workers if w.runner is not None])  # started

    # -- workers ---------------------------------------------------------------
    def start(self, concurrency: int = DEFAULT_CONCURRENCY, pool: str = "thread", *,
              queues: Any = None, app: Optional[str] = None,
              metrics_port: Optional[int] = None, metrics_host: str = "127.0.0.1") -> Worker:
        """Start a worker in this process, in background threads; ``worker.stop()`` ends it.

        ``queues``: names served in strict order, or ``{name: weight}`` (weighted random
        order, each fetch falling through to the others); None: every queue, in the order
        of :meth:`queue_names`. ``app``: ``"module:attr"`` naming this TaskQueue, for the
        children of the process pool (default: each task's module and name).
        ``metrics_port``: also serve Prometheus metrics on ``metrics_host:metrics_port``
        (0: a free port) until the worker stops; needs ``pip install 'diskqueue[metrics]'``.
        """
        worker = Worker(self, concurrency=concurrency, pool=pool, queues=queues, app=app,
                        on_stop=self._stopped)
        self._workers.append(worker)
        try:
            if metrics_port is not None:
                # an optional package above this layer, loaded only when asked for
                from ..metrics.server import start_serving

                return start_serving(worker, metrics_port, metrics_host)
            worker.start()
        except BaseException:
            if worker.scheduler is None:  # nothing of it runs: close() has nothing to stop
                self._stopped(worker)
            raise
        return worker

    def _stopped(self, worker: Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)

    def run(self, concurrency: int = DEFAULT_CONCURRENCY, pool: str = "thread", *,
            queues: Any = None, grace: float = 30.0, drain: bool = False,
            progress: Optional[bool] = None, app: Optional[str] = None,
            metrics_port: Optional[int] = None, metrics_host: str = "127.0.0.1") -> bool:
        """Run a worker until SIGTERM/SIGINT (or, with ``drain``, until no job is left).

        On a signal it stops fetching and lets running jobs finish for ``grace`` seconds;
        a second signal stops waiting. Returns True when every job it started finished
        (False: some were still running at the end of the grace period; they run again
        on the next start). ``progress``: show a progress bar while draining (default:
        when stderr is a terminal). ``metrics_port``, ``metrics_host``: as for :meth:`start`.
        """
        return run_until_stopped(
            lambda: self.start(concurrency, pool, queues=queues, app=app,
                               metrics_port=metrics_port, metrics_host=metrics_host),
            grace=grace, drain=drain, progress=progress)

