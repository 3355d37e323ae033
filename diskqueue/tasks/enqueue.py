"""``Enqueuer``: turning calls of a task into job records, one or many in one write.

Both ``TaskQueue.enqueue`` (a task known by name) and ``TaskFunction.delay`` (a task
known by its options) come here; a job is a record, plus an entry in its queue or a
schedule record when it is delayed, written in one batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Optional

from .._checks import check_duration
from . import layout as R
from .job import Job
from .jobstore import JobStore
from .middleware import Hooks
from .options import TaskOptions
from .payload import CODED, Payload


def seconds_until(delay: Any, eta: Any, now: float) -> Optional[float]:
    """The due time (epoch seconds) of ``delay=``/``eta=``, or None for "now".

    Raises TypeError (both given, or of the wrong type) or ValueError (a bad duration,
    or one that ends after the year 9999).
    """
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


def check_call(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` of one call as a list and a dict; raises TypeError when they
    are not a tuple or list and a dict with str keys."""
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


def _due(delay: Any, eta: Any, now: float) -> Optional[float]:
    """:func:`seconds_until`, with a time already past read as "now"."""
    due = seconds_until(delay, eta, now)
    return None if due is None or due <= now else due


_DEFAULTS = TaskOptions()  # where a call of a task not registered here goes


def _place(options: Optional[TaskOptions], queue: Optional[str], priority: Optional[int]
           ) -> tuple[str, int]:
    """The queue and priority of a call: the ones given, else the task's (else the
    defaults)."""
    opts = options or _DEFAULTS
    return (opts.queue if queue is None else R.check_queue(queue),
            opts.priority if priority is None else R.check_priority(priority))


PLACES = 1024  # (task, queue, priority) places an Enqueuer keeps made; more are made per call

# What every new job of one task in one queue and priority shares: its record's constant
# fields (a template) and the bytes around its per-job fields, the queue's namespace and
# the lane of the priority.
Place = tuple[dict[str, Any], R.Frame, bytes, bytes]


class Enqueuer:
    """Writes the jobs of calls to the ``store``, with the ``hooks`` around each."""

    def __init__(self, store: JobStore, hooks: Hooks) -> None:
        self.store = store
        self.hooks = hooks
        self._places: dict[tuple[str, str, int], Place] = {}

    def _where(self, name: str, queue: str, priority: int) -> Place:
        """The :data:`Place` of the jobs of ``name`` in ``queue`` at ``priority``, made
        once (the per-call part of an enqueue is then only what differs per job)."""
        key = (name, queue, priority)
        place = self._places.get(key)
        if place is None:
            template = R.record_template(name, queue, priority)
            place = (template, R.record_frame(template), R.queue_ns(queue),
                     R.lane_of(priority))
            if len(self._places) < PLACES:  # a caller making up priorities does not grow it
                self._places[key] = place
        return place

    def _record(self, template: dict[str, Any], job_id: str, name: str, args: list[Any],
                kwargs: dict[str, Any], now: float, due: Optional[float],
                unique_key: Optional[str]) -> dict[str, Any]:
        """A new job's record, its arguments encoded by the store's codec (TypeError
        naming the argument that cannot be)."""
        payload = self.store.payload
        if payload.name is None:  # the default codec: the values go in the record as they are
            return R.fill_record(template, job_id, args, kwargs, now, due, unique_key)
        coded_args, coded_kwargs, coded = payload.call(name, args, kwargs)
        rec = R.fill_record(template, job_id, coded_args, coded_kwargs, now, due, unique_key)
        rec[CODED] = coded
        return rec

    @staticmethod
    def _packed(rec: dict[str, Any]) -> bytes:
        """A new job's record as stored; raises TypeError naming the argument that
        cannot be (nothing was written)."""
        try:
            return R.pack(rec)
        except TypeError as exc:
            raise Payload().blame(rec["task"], rec["args"], rec["kwargs"], exc) from exc

    def _framed(self, frame: R.Frame, jidb: bytes, rec: dict[str, Any], now: float
                ) -> bytes:
        """The bytes of ``rec``, a new pending job's record of the place of ``frame``
        enqueued at ``now``, packing only its arguments (the same bytes as
        :meth:`_packed`, which raises the TypeError naming an argument that cannot be)."""
        kwargs = rec["kwargs"]
        try:
            return R.framed(frame, jidb, R.pack_raw(rec["args"]),
                            R.pack_raw(kwargs) if kwargs else R.NO_KWARGS, now)
        except Exception:  # (msgpack's own error)
            return self._packed(rec)

    def _written(self, delayed: bool) -> None:
        """After a write of new jobs: sync it when asked, wake the schedulers for delays."""
        if self.store.sync:
            self.store.engine().sync()
        if delayed:
            self.store.shared.wake_schedulers()

    def one(self, name: str, options: Optional[TaskOptions], args: Any, kwargs: Any, *,
            queue: Optional[str] = None, priority: Optional[int] = None, delay: Any = None,
            eta: Any = None, unique_key: Optional[str] = None) -> Job:
        """Enqueue one call of the task ``name``; returns its Job (with ``unique_key``:
        the job already holding the key, when there is one).

        Raises TypeError or ValueError for bad arguments or options, TypeError for
        arguments the codec cannot store (naming the task and the argument), and what a
        ``before_enqueue`` hook raises; in each case nothing is written.
        """
        args, kwargs = check_call(args, kwargs)
        queue, priority = _place(options, queue, priority)
        if unique_key is not None and (not isinstance(unique_key, str) or not unique_key):
            raise TypeError("unique_key must be a non-empty str")
        now = self.store.clock()
        due = None if delay is None and eta is None else _due(delay, eta, now)
        return self._one(name, queue, priority, args, kwargs, now, due, unique_key)

    def call(self, name: str, options: Optional[TaskOptions], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Job:
        """:meth:`one` of a call as Python passes one on (``fn.delay(*args, **kwargs)``:
        a tuple, and a dict whose keys are str), to the task's queue and priority:
        nothing to check but the codec. Raises as :meth:`one` does."""
        opts = options or _DEFAULTS
        store, hooks = self.store, self.hooks
        if store.payload.name is not None or hooks.wants("before_enqueue"):
            return self._one(name, opts.queue, opts.priority, list(args), kwargs,
                             store.clock(), None, None)
        # The usual delay(): _one() spelled out for a pending job of the default codec
        # with no hook before it (a tenth of its CPU time).
        template, frame, ns, lane = self._where(name, opts.queue, opts.priority)
        now = store.clock()
        jid = store.new_id()
        rec = template.copy()
        rec["id"], rec["args"], rec["kwargs"], rec["enqueued"], rec["ready"] = (
            jid, list(args), kwargs, now, now)
        job: Job[Any] = Job(self, jid, rec)
        jidb = jid.encode()
        eng = store.engine()
        data = self._framed(frame, jidb, rec, now)
        eng.push(ns, [(lane, jidb)], records=[(R.NS_JOBS, jidb, data)])
        if store.sync:
            eng.sync()
        if hooks.wants("after_enqueue"):
            hooks.emit("after_enqueue", job)
        return job

    def _one(self, name: str, queue: str, priority: int, args: list[Any],
             kwargs: dict[str, Any], now: float, due: Optional[float],
             unique_key: Optional[str]) -> Job:
        """:meth:`one` once its arguments are checked: one write of the job's record and
        its queue entry (or schedule record)."""
        template, frame, ns, lane = self._where(name, queue, priority)
        jid = self.store.new_id()
        rec = self._record(template, jid, name, args, kwargs, now, due, unique_key)
        job: Job[Any] = Job(self, jid, rec)
        hooks = self.hooks
        jidb = jid.encode()
        if hooks.wants("before_enqueue"):
            hooks.emit("before_enqueue", job)  # (it may change the record: pack it whole)
            data = self._packed(rec)
        elif due is None and unique_key is None and CODED not in rec:
            data = self._framed(frame, jidb, rec, now)
        else:
            data = self._packed(rec)
        ops: R.Ops = [(R.NS_JOBS, jidb, data)]
        if due is None:
            entries = [(lane, jidb)]
        else:
            entries = []
            ops.append((R.NS_SCHED, R.sched_key(due, jidb), R.sched_value(queue, priority, True)))
        eng = self.store.engine()
        if unique_key is None:
            eng.push(ns, entries, records=ops)
        else:
            guard = unique_key.encode("utf-8")
            ops.append((R.NS_UNIQUE, guard, jidb))
            found = eng.push_unless(ns, entries, (R.NS_UNIQUE, guard), records=ops)
            if found is not None:
                return Job(self, bytes(found).decode())
        self._written(due is not None)
        if hooks.wants("after_enqueue"):
            hooks.emit("after_enqueue", job)
        return job

    def many(self, name: str, options: Optional[TaskOptions], calls: Iterable[Any], *,
             queue: Optional[str] = None, priority: Optional[int] = None, delay: Any = None,
             eta: Any = None) -> list[Job]:
        """Enqueue many calls of one task atomically (all or none), in one write; each
        call as :func:`split_call` reads it. Raises as :meth:`one` does (nothing is
        written then)."""
        queue, priority = _place(options, queue, priority)
        now = self.store.clock()
        due = _due(delay, eta, now)
        template, frame, ns, lane = self._where(name, queue, priority)
        sched = R.sched_value(queue, priority, True)
        jobs: list[Job] = []
        entries: list[tuple[bytes, bytes]] = []
        ops: R.Ops = []
        hooks = self.hooks
        hooked = hooks.wants("before_enqueue")
        coded = self.store.payload.name is not None
        # The record every job of the batch starts from, and (no hook may change a record,
        # no delay, the default codec) the end of its bytes: only the id, the args and the
        # kwargs differ from job to job.
        base = R.fill_record(template, "", [], {}, now, due)
        framed = not (hooked or coded or due is not None)
        framed_as, tail = R.framed, R.frame_tail(frame, now)
        record, pack, packed = self._record, R.packer(), self._packed
        calls = calls if isinstance(calls, (list, tuple)) else list(calls)
        for jid, call in zip(self.store.new_ids(len(calls)), calls, strict=True):
            if (type(call) is tuple and len(call) == 2 and type(call[0]) is tuple
                    and type(call[1]) is dict and not call[1]):  # ((args...), {}): as is
                args, kwargs = list(call[0]), call[1]
            else:
                args, kwargs = check_call(*split_call(call))
            if coded:
                rec = record(template, jid, name, args, kwargs, now, due, None)
            else:
                rec = base.copy()
                rec["id"], rec["args"], rec["kwargs"] = jid, args, kwargs
            job: Job[Any] = Job(self, jid, rec)
            if hooked:
                hooks.emit("before_enqueue", job)
            jidb = jid.encode()
            if framed:  # (inline: a call per job costs)
                try:
                    data = framed_as(frame, jidb, pack(args),
                                     pack(kwargs) if kwargs else R.NO_KWARGS, now, tail)
                except Exception:  # (msgpack's own error) the TypeError naming the argument
                    data = packed(rec)
            else:
                try:
                    data = pack(rec)
                except Exception:  # (msgpack's own error) the TypeError naming the argument
                    data = packed(rec)
            ops.append((R.NS_JOBS, jidb, data))
            if due is None:
                entries.append((lane, jidb))
            else:
                ops.append((R.NS_SCHED, R.sched_key(due, jidb), sched))
            jobs.append(job)
        if not jobs:
            return []
        self.store.engine().push(ns, entries, records=ops)
        self._written(due is not None)
        if hooks.wants("after_enqueue"):
            for job in jobs:
                hooks.emit("after_enqueue", job)
        return jobs
