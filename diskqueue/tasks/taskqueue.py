"""``TaskQueue``: register tasks, enqueue calls, manage dead letters, start workers.

A TaskQueue is a directory of structure kind ``"tasks"`` (see :mod:`.records` for the
layout). It opens the directory lazily, on first use, so importing the module that
defines the tasks has no side effect.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Optional

from .._checks import check_duration
from ..engine import engine as engine_mod
from ..errors import Closed
from ..structures.handle import check_path
from . import deadletters
from . import layout as R
from .directory import shared
from .job import PENDING, SCHEDULED, Job
from .middleware import Hooks
from .periodic import Periodic
from .task import DEFAULT_RESULT_TTL, TaskFunction, TaskOptions

if TYPE_CHECKING:
    from .worker.worker import Worker

DEFAULT_CONCURRENCY = 4


def _seconds_until(delay: Any, eta: Any, now: float) -> Optional[float]:
    """The due time (epoch seconds) of ``delay=``/``eta=``, or None for "now"."""
    if delay is not None and eta is not None:
        raise TypeError("pass delay= or eta=, not both")
    if delay is not None:
        seconds = check_duration("delay", delay, timedelta=True)
        assert seconds is not None
        if now + seconds > R.LAST_DUE:
            raise ValueError(f"delay must end before the year 9999, not in {seconds!r} s")
        return now + seconds if seconds > 0 else None
    if eta is not None:
        if not isinstance(eta, dt.datetime):
            raise TypeError(f"eta must be a datetime, not {type(eta).__name__}")
        return eta.timestamp()  # a naive datetime is local time
    return None


def _check_call(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple or list, not {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}")
    for key in kwargs:
        if not isinstance(key, str):
            raise TypeError(f"keyword argument names must be str, not {type(key).__name__}")
    return list(args), kwargs


def split_call(call: Any) -> tuple[Any, Any]:
    """One call of ``enqueue_many``: ``(args, kwargs)`` when it is a pair of a tuple or
    list and a dict; else a tuple or list is the positional arguments; anything else is
    the one argument. (So a call whose two positional arguments are a list and a dict
    must be written as a pair: ``(([1], {"a": 2}), {})``.)"""
    if (isinstance(call, tuple) and len(call) == 2 and isinstance(call[0], (tuple, list))
            and isinstance(call[1], dict)):
        return call[0], call[1]
    if isinstance(call, (tuple, list)):
        return call, {}
    return (call,), {}


class TaskQueue:
    """Tasks and their jobs in one directory.

    ``clock`` (a function returning epoch seconds, default ``time.time``, or an object
    with such a ``time()`` method) drives delays,
    backoff, periodic ticks and rate limits, so tests can move time; ``sync=True`` makes
    every enqueue and every finished job survive power loss; ``middleware`` is a list of
    :class:`~diskqueue.tasks.Middleware`; ``connect_timeout`` (seconds, default 10) bounds
    the wait for another process holding the directory that does not answer.
    """

    def __init__(self, path: Any, *, clock: Optional[Callable[[], float]] = None,
                 sync: bool = False, middleware: Iterable[Any] = (),
                 connect_timeout: float = 10.0) -> None:
        self._path = check_path(path)
        self._connect_timeout = engine_mod.check_connect_timeout(connect_timeout)
        if clock is not None and not callable(clock):
            clock = getattr(clock, "time", None)  # an object with .time() will do too
            if not callable(clock):
                raise TypeError("clock must be a function returning epoch seconds")
        self.clock: Callable[[], float] = clock or time.time
        if not isinstance(sync, bool):
            raise TypeError(f"sync must be a bool, not {type(sync).__name__}")
        self.sync = sync
        self.registry: dict[str, TaskFunction] = {}
        self.hooks = Hooks()
        for m in middleware:
            self.hooks.add(m)
        self._eng: Any = None
        self._closed = False
        self._open_lock = threading.Lock()
        self._workers: list[Worker] = []
        self._pid = -1
        self._ids: Any = None
        self._id_prefix = ""

    # -- the directory ---------------------------------------------------------
    @property
    def path(self) -> str:
        return self._path

    def set_path(self, path: Any) -> None:
        """Point this TaskQueue at another directory; only before it is first used."""
        if self._eng is not None:
            raise RuntimeError(f"{self._path} is already open; set_path() comes before use")
        self._path = check_path(path)

    def _engine(self) -> Any:
        eng = self._eng
        if eng is not None:
            return eng
        with self._open_lock:
            if self._closed:
                raise Closed(f"task queue {self._path} is closed")
            if self._eng is None:
                eng = engine_mod.acquire(self._path, connect_timeout=self._connect_timeout)
                try:
                    eng.ensure_kind("tasks", ())
                    if eng.get_record(R.NS_META, b"format") is None:
                        eng.write_records([(R.NS_META, b"format", R.FORMAT)])
                except BaseException:
                    eng.release()
                    raise
                self._eng = eng
            return self._eng

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop this TaskQueue's workers (30 s grace), then close the directory."""
        for worker in list(self._workers):
            worker.stop(timeout=30)
        with self._open_lock:
            self._closed = True
            eng, self._eng = self._eng, None
        if eng is not None:
            eng.release()

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TaskQueue {self._path!r} {len(self.registry)} tasks>"

    # -- registering -----------------------------------------------------------
    def task(self, fn: Optional[Callable[..., Any]] = None, *, name: Optional[str] = None,
             retries: int = 0, backoff: float = 1.0, max_backoff: float = 3600.0,
             timeout: Optional[float] = None, queue: str = "default", priority: int = 0,
             rate_limit: Optional[str] = None,
             result_ttl: Optional[float] = DEFAULT_RESULT_TTL) -> Any:
        """Register a function as a task (usable as ``@tasks.task`` or ``@tasks.task(...)``).

        ``retries``: attempts after the first failure; ``backoff``: seconds before the
        first retry, doubling each time up to ``max_backoff``, with jitter; ``timeout``:
        seconds a run may take; ``queue`` and ``priority`` (higher runs first): where its
        jobs go by default; ``rate_limit``: starts per period in each worker process,
        such as ``"100/m"``; ``result_ttl``: seconds a finished job's record (and result)
        is kept (None: for ever, 0: not at all). The name defaults to the function's.
        """
        options = TaskOptions(retries, backoff, max_backoff, timeout, queue, priority,
                              rate_limit, result_ttl)

        def register(func: Callable[..., Any]) -> TaskFunction:
            return self._register(func, name, options, None)

        return register(fn) if fn is not None else register

    def periodic(self, every: Any = None, *, cron: Optional[str] = None,
                 name: Optional[str] = None, **options: Any) -> Callable[..., TaskFunction]:
        """Register a function of no arguments to run every ``every`` seconds (or
        timedelta; ticks are aligned to the epoch) or on a 5-field ``cron`` schedule
        (local time; ``periodic("*/5 * * * *")`` is the same as ``cron=``). Takes the
        options of :meth:`task`."""
        if isinstance(every, str) and cron is None:
            every, cron = None, every
        schedule = Periodic(every, cron)
        task_options = TaskOptions(**options)

        def register(func: Callable[..., Any]) -> TaskFunction:
            return self._register(func, name, task_options, schedule)

        return register

    def _register(self, fn: Callable[..., Any], name: Optional[str], options: TaskOptions,
                  periodic: Optional[Periodic]) -> TaskFunction:
        if not callable(fn):
            raise TypeError(f"a task must be a function, not {type(fn).__name__}")
        name = name if name is not None else getattr(fn, "__name__", None)
        if not isinstance(name, str) or not name:
            raise TypeError("a task needs a name: pass name=")
        if name in self.registry and self.registry[name].fn is not fn:
            raise ValueError(f"a task named {name!r} is already registered on {self!r}")
        task = TaskFunction(self, fn, name, options, periodic)
        self.registry[name] = task
        return task

    def add_middleware(self, middleware: Any) -> None:
        self.hooks.add(middleware)

    # -- enqueue ---------------------------------------------------------------
    def _new_id(self) -> str:
        if self._pid != os.getpid():  # a new process (or first use): a fresh id space
            self._pid = os.getpid()
            self._id_prefix = os.urandom(5).hex()
            self._ids = itertools.count(1)
        return f"{self._id_prefix}{next(self._ids):06x}"

    def enqueue(self, name: str, *args: Any, **kwargs: Any) -> Job:
        """Enqueue a call of the task ``name``, which need not be registered here (its
        registered queue and priority apply when it is, else ``"default"`` and 0)."""
        return self._enqueue(self._target(name), args, kwargs)

    async def aenqueue(self, name: str, *args: Any, **kwargs: Any) -> Job:
        """``enqueue`` for asyncio (one short write, made on the loop: docs/asyncio.md)."""
        return self.enqueue(name, *args, **kwargs)

    def apply(self, name: str, args: Any = (), kwargs: Optional[dict[str, Any]] = None,
              **options: Any) -> Job:
        """``enqueue`` by name with ``TaskFunction.apply``'s options."""
        return self._enqueue(self._target(name), args, kwargs or {}, **options)

    def _target(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise TypeError(f"a task name is a str, not {type(name).__name__}")
        if not name:
            raise ValueError("a task name cannot be empty")
        return self.registry.get(name) or name

    def _enqueue(self, target: Any, args: Any, kwargs: Any, *, queue: Optional[str] = None,
                 priority: Optional[int] = None, delay: Any = None, eta: Any = None,
                 unique_key: Optional[str] = None) -> Job:
        args, kwargs = _check_call(args, kwargs)
        if isinstance(target, TaskFunction):
            name, opts = target.name, target.options
            queue = opts.queue if queue is None else R.check_queue(queue)
            priority = opts.priority if priority is None else R.check_priority(priority)
        else:
            name = target
            queue = "default" if queue is None else R.check_queue(queue)
            priority = 0 if priority is None else R.check_priority(priority)
        if unique_key is not None and (not isinstance(unique_key, str) or not unique_key):
            raise TypeError("unique_key must be a non-empty str")
        now = self.clock()
        due = _seconds_until(delay, eta, now) if delay is not None or eta is not None else None
        if due is not None and due <= now:
            due = None
        jid = self._new_id()
        rec: dict[str, Any] = {
            "id": jid, "task": name, "args": args, "kwargs": kwargs, "queue": queue,
            "priority": priority, "state": PENDING if due is None else SCHEDULED,
            "attempts": 0, "failures": 0, "enqueued": now, "ready": now if due is None else due,
        }
        if due is not None:
            rec["eta"] = due
        if unique_key is not None:
            rec["unique"] = unique_key
        job = Job(self, jid, rec)
        hooks = self.hooks
        if hooks.wants("before_enqueue"):
            hooks.emit("before_enqueue", job)
        data = R.pack(rec)  # TypeError here: nothing was written
        existing = self._write_new(jid.encode(), data, queue, priority, due, unique_key)
        if existing is not None:
            return Job(self, existing)
        if hooks.wants("after_enqueue"):
            hooks.emit("after_enqueue", job)
        return job

    def _write_new(self, jid: bytes, data: bytes, queue: str, priority: int,
                   due: Optional[float], unique_key: Optional[str]) -> Optional[str]:
        eng = self._engine()
        ns = R.queue_ns(queue)
        rec_ops: list[tuple[bytes, bytes, Optional[bytes]]] = [(R.NS_JOBS, jid, data)]
        entries = []
        if due is None:
            entries.append((R.lane_of(priority), jid))
        else:
            rec_ops.append((R.NS_SCHED, R.sched_key(due, jid), R.pack([queue, priority, True])))
        if unique_key is None:
            eng.push(ns, entries, records=rec_ops)
        else:
            guard = unique_key.encode("utf-8")
            rec_ops.append((R.NS_UNIQUE, guard, jid))
            found = eng.push_unless(ns, entries, (R.NS_UNIQUE, guard), records=rec_ops)
            if found is not None:
                return bytes(found).decode()
        if self.sync:
            eng.sync()
        if due is not None:
            shared(self._path).wake_schedulers()
        return None

    def enqueue_many(self, name: str, calls: Iterable[tuple[Any, Any]], *,
                     queue: Optional[str] = None, priority: Optional[int] = None,
                     delay: Any = None, eta: Any = None) -> list[Job]:
        """Enqueue many calls of one task atomically (all or none), in one write.

        Each call is an ``(args, kwargs)`` pair, ``((1, 2), {"x": 4})``, or a tuple of
        positional arguments, ``(1, 2)``, or one argument, ``5`` (see :func:`split_call`).
        """
        target = self._target(name)
        opts = target.options if isinstance(target, TaskFunction) else TaskOptions()
        name = target.name if isinstance(target, TaskFunction) else target
        queue = opts.queue if queue is None else R.check_queue(queue)
        priority = opts.priority if priority is None else R.check_priority(priority)
        now = self.clock()
        due = _seconds_until(delay, eta, now)
        if due is not None and due <= now:
            due = None
        lane = R.lane_of(priority)
        jobs: list[Job] = []
        entries: list[tuple[bytes, bytes]] = []
        rec_ops: list[tuple[bytes, bytes, Optional[bytes]]] = []
        sched_value = R.pack([queue, priority, True])
        for call in calls:
            args, kwargs = _check_call(*split_call(call))
            jid = self._new_id()
            rec = {"id": jid, "task": name, "args": args, "kwargs": kwargs, "queue": queue,
                   "priority": priority, "state": PENDING if due is None else SCHEDULED,
                   "attempts": 0, "failures": 0, "enqueued": now,
                   "ready": now if due is None else due}
            if due is not None:
                rec["eta"] = due
            job = Job(self, jid, rec)
            if self.hooks.wants("before_enqueue"):
                self.hooks.emit("before_enqueue", job)
            jidb = jid.encode()
            rec_ops.append((R.NS_JOBS, jidb, R.pack(rec)))
            if due is None:
                entries.append((lane, jidb))
            else:
                rec_ops.append((R.NS_SCHED, R.sched_key(due, jidb), sched_value))
            jobs.append(job)
        if not jobs:
            return []
        eng = self._engine()
        eng.push(R.queue_ns(queue), entries, records=rec_ops)
        if self.sync:
            eng.sync()
        if due is not None:
            shared(self._path).wake_schedulers()
        if self.hooks.wants("after_enqueue"):
            for job in jobs:
                self.hooks.emit("after_enqueue", job)
        return jobs

    # -- jobs ------------------------------------------------------------------
    def job(self, job_id: str) -> Job:
        """The Job with this id (``UnknownJob`` when there is none)."""
        if not isinstance(job_id, str):
            raise TypeError(f"a job id is a str, not {type(job_id).__name__}")
        job = Job(self, job_id)
        job.info()
        return job

    def _read_job(self, job_id: str) -> Optional[dict[str, Any]]:
        data = self._engine().get_record(R.NS_JOBS, job_id.encode())
        return None if data is None else R.unpack(data)

    def _wait_finished(self, job_id: str, end: Optional[float]) -> Optional[dict[str, Any]]:
        """The job's record once it is finished, or as it is when ``end`` passes."""
        sh = shared(self._path)
        with sh.finished:
            sh.waiters += 1
            try:
                while True:
                    record = self._read_job(job_id)
                    if record is None or record["state"] in ("success", "dead"):
                        return record
                    left = None if end is None else end - time.monotonic()
                    if left is not None and left <= 0:
                        return record
                    # woken by a worker of this process; the cap covers other processes
                    sh.finished.wait(0.2 if left is None else min(left, 0.2))
            finally:
                sh.waiters -= 1

    def pending(self, queue: Optional[str] = None, limit: int = 20) -> list[Job]:
        """The next jobs waiting in a queue (all queues: each in turn), without taking them."""
        eng = self._engine()
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
        rows = self._engine().scan_records(R.NS_SCHED, limit=limit)
        return [Job(self, bytes(key[8:]).decode()) for key, _ in rows]

    def queue_names(self) -> list[str]:
        """Queues of registered tasks, then any other queue the directory holds."""
        names = list(dict.fromkeys(t.options.queue for t in self.registry.values()))
        on_disk = sorted(ns[2:] for ns in self._engine().info() if ns.startswith("q:"))
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
        from .stats import collect

        return collect(self)

    # -- workers ---------------------------------------------------------------
    def start(self, concurrency: int = DEFAULT_CONCURRENCY, pool: str = "thread", *,
              queues: Any = None, app: Optional[str] = None) -> Worker:
        """Start a worker in this process, in background threads; ``worker.stop()`` ends it.

        ``queues``: names served in strict order, or ``{name: weight}`` (weighted random
        order, each fetch falling through to the others); None: every queue, in the order
        of :meth:`queue_names`. ``app``: ``"module:attr"`` naming this TaskQueue, for the
        children of the process pool (default: each task's module and name).
        """
        from .worker.worker import Worker

        worker = Worker(self, concurrency=concurrency, pool=pool, queues=queues, app=app)
        worker.start()
        return worker

    def run(self, concurrency: int = DEFAULT_CONCURRENCY, pool: str = "thread", *,
            queues: Any = None, grace: float = 30.0, drain: bool = False,
            progress: Optional[bool] = None, app: Optional[str] = None) -> bool:
        """Run a worker until SIGTERM/SIGINT (or, with ``drain``, until no job is left).

        On a signal it stops fetching and lets running jobs finish for ``grace`` seconds;
        a second signal stops waiting. Returns True when every job it started finished
        (False: some were still running at the end of the grace period; they run again
        on the next start). ``progress``: show a progress bar while draining (default:
        when stderr is a terminal).
        """
        from .worker.runloop import run_until_stopped

        return run_until_stopped(self, concurrency=concurrency, pool=pool, queues=queues,
                                 grace=grace, drain=drain, progress=progress, app=app)

