"""What the dashboard reads from a directory: counts, pages of jobs, dead letters,
workers and periodic tasks; and the two things it changes (retry and purge dead jobs).

It reads through :class:`~diskqueue.tasks.TaskQueue` where that has a call for it
(``stats``, ``job``, ``retry_dead``, ``purge_dead``) and pages through the engine
where the call would read everything at once (``dead()`` reads every dead job; a
page of 50 must not). Job records are msgpack; nothing here ever loads a pickle, and
a plain structure's items are shown only when they decode as msgpack.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

import msgpack

from ..errors import DiskQueueError
from ..sharing import registry as engine_mod
from ..tasks import TaskQueue, UnknownJob
from ..tasks import layout as R
from ..tasks.stats import merge, percentile
from ..tasks.worker.presence import alive

PAGE = 50  # rows in one page of jobs or dead letters
SCAN = 500  # records read per step while filtering dead letters
TEXT_MAX = 20_000  # characters of a value shown before it is cut


def shown(value: Any) -> Any:
    """A value as JSON can carry it: bytes become a short description, long strings are
    cut. The page sets it as text, never as markup."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return f"<{len(data)} bytes: {data[:64].hex()}{'…' if len(data) > 64 else ''}>"
    if isinstance(value, str):
        return value if len(value) <= TEXT_MAX else value[:TEXT_MAX] + "… (cut)"
    if isinstance(value, dict):
        return {str(k): shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shown(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return repr(value)


def _summary(rec: dict[str, Any]) -> dict[str, Any]:
    err = rec.get("error") or {}
    return {"id": rec.get("id"), "task": rec.get("task"), "queue": rec.get("queue"),
            "state": rec.get("state"), "attempts": rec.get("attempts", 0),
            "args": shown(rec.get("args", [])), "kwargs": shown(rec.get("kwargs", {})),
            "enqueued": rec.get("enqueued"), "finished": rec.get("finished"),
            "eta": rec.get("eta"),
            "error": shown(f"{err.get('type', '')}: {err.get('message', '')}") if err else None}


def _matches(rec: dict[str, Any], task: str, error: str) -> bool:
    if task and rec.get("task") != task:
        return False
    if error:
        err = rec.get("error") or {}
        text = f"{err.get('type', '')}: {err.get('message', '')}".lower()
        return error.lower() in text
    return True


class Source:
    """One directory as the dashboard sees it (a task directory or plain structures).

    Holds the directory open (as its owner, or a client of the process that owns it)
    until :meth:`close`. Raises ``DiskQueueError`` when the directory cannot be opened.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.eng = engine_mod.acquire(path)
        self._tasks: Optional[TaskQueue] = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Let go of the directory."""
        with self._lock:
            if self._tasks is not None:
                self._tasks.close()
            self.eng.release()

    # -- what the directory is -------------------------------------------------
    def tasks(self) -> Optional[TaskQueue]:
        """The TaskQueue of a task directory; None while it holds plain structures only
        (checked again on each call until a producer makes it a task directory)."""
        with self._lock:
            if self._tasks is None and self.eng.get_record(R.NS_META, b"format") is not None:
                self._tasks = TaskQueue(self.path)
            return self._tasks

    # -- counts ----------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, Any]]:
        """Per queue: depth, scheduled, in_flight, dead, done, failed (plain structures:
        depth and in_flight, the rest 0)."""
        tasks = self.tasks()
        if tasks is not None:
            return tasks.stats()
        return {(ns or "(default)"): {"depth": c["ready"], "scheduled": 0,
                                      "in_flight": c["reserved"], "dead": 0, "done": 0,
                                      "failed": 0}
                for ns, c in self.eng.info().items()}

    def latency(self) -> dict[str, dict[int, int]]:
        """Each queue's enqueue-to-start histogram, every worker's added up."""
        if self.tasks() is None:
            return {}
        out: dict[str, dict[str, Any]] = {}
        start = b""
        while True:
            rows = self.eng.scan_records(R.NS_LAT, start=start, limit=1000)
            for key, value in rows:
                queue = bytes(key).split(b"\x00", 1)[0].decode("utf-8", "replace")
                merge(out.setdefault(queue, {}), R.unpack(bytes(value)))
            if len(rows) < 1000:
                return {q: d.get("lat", {}) for q, d in out.items()}
            start = bytes(rows[-1][0]) + b"\x00"

    # -- jobs --------------------------------------------------------------------
    def job(self, job_id: str) -> dict[str, Any]:
        """One job's whole record, ready to show. Raises ``UnknownJob``."""
        return shown(self._need_tasks().job(job_id).info())  # type: ignore[no-any-return]

    def pending(self, queue: str, after: Optional[str], limit: int = PAGE
                ) -> tuple[list[dict[str, Any]], Optional[str]]:
        """A page of the jobs waiting in ``queue``, in the order they will run, after
        the cursor ``after`` (from the previous page); and the next page's cursor."""
        tasks = self._need_tasks()
        cursor = None
        if after:
            lane, _, seq = after.partition(":")
            cursor = (bytes.fromhex(lane), int(seq))
        entries = self.eng.scan(R.queue_ns(R.check_queue(queue)), after=cursor,
                                limit=limit + 1)
        rows = [self._row(tasks, bytes(e[3]).decode()) for e in entries[:limit]]
        last = entries[limit - 1] if len(entries) > limit else None
        return [r for r in rows if r], (f"{bytes(last[0]).hex()}:{last[1]}" if last else None)

    def scheduled(self, after: Optional[str], limit: int = PAGE
                  ) -> tuple[list[dict[str, Any]], Optional[str]]:
        """A page of the jobs waiting for their time, soonest first."""
        tasks = self._need_tasks()
        start = bytes.fromhex(after) + b"\x00" if after else b""
        rows = self.eng.scan_records(R.NS_SCHED, start=start, limit=limit + 1)
        out = [self._row(tasks, bytes(k[8:]).decode()) for k, _ in rows[:limit]]
        nxt = bytes(rows[limit - 1][0]).hex() if len(rows) > limit else None
        return [r for r in out if r], nxt

    def dead(self, after: Optional[str], task: str = "", error: str = "",
             limit: int = PAGE) -> tuple[list[dict[str, Any]], Optional[str]]:
        """A page of dead jobs (by queue, then job id) matching ``task`` (its name) and
        ``error`` (a part of "type: message", any case); and the next page's cursor."""
        tasks = self._need_tasks()
        start = bytes.fromhex(after) + b"\x00" if after else b""
        out: list[dict[str, Any]] = []
        while True:
            rows = self.eng.scan_records(R.NS_DEAD, start=start, limit=SCAN)
            for key, _ in rows:
                rec = self._record(tasks, bytes(key).split(b"\x00", 1)[1].decode())
                if rec is not None and _matches(rec, task, error):
                    out.append(_summary(rec))
                    if len(out) == limit:
                        return out, bytes(key).hex()
            if len(rows) < SCAN:
                return out, None
            start = bytes(rows[-1][0]) + b"\x00"

    def _need_tasks(self) -> TaskQueue:
        tasks = self.tasks()
        if tasks is None:
            raise DiskQueueError(f"{self.path} is not a task directory: it has no jobs")
        return tasks

    @staticmethod
    def _record(tasks: TaskQueue, job_id: str) -> Optional[dict[str, Any]]:
        try:
            return tasks.job(job_id).info()
        except UnknownJob:  # finished and forgotten between the scan and the read
            return None

    def _row(self, tasks: TaskQueue, job_id: str) -> Optional[dict[str, Any]]:
        rec = self._record(tasks, job_id)
        return None if rec is None else _summary(rec)

    def items(self, queue: str, limit: int = PAGE) -> list[Any]:
        """The first items of a plain structure, shown only when they are msgpack."""
        ns = b"" if queue == "(default)" else queue.encode("utf-8")
        out = []
        for entry in self.eng.scan(ns, limit=limit):
            data = bytes(entry[3])
            try:
                out.append(shown(msgpack.unpackb(data, raw=False, strict_map_key=False)))
            except Exception:  # another codec (perhaps pickle): never decoded here
                out.append(f"<{len(data)} bytes, not msgpack>")
        return out

    # -- dead letters: the changes -----------------------------------------------
    def act_on_dead(self, action: str, job_id: Optional[str], task: str = "",
                    error: str = "") -> int:
        """Retry or purge one dead job, every dead job, or (with ``task``/``error``)
        every dead job matching them. Returns how many. Raises ``UnknownJob`` or
        ``ValueError`` (the job is not dead) for one job."""
        tasks = self._need_tasks()
        act = tasks.retry_dead if action == "retry" else tasks.purge_dead
        if job_id is not None or not (task or error):
            return act(job_id)
        done = 0
        after: Optional[str] = None
        ids: list[str] = []
        while True:
            page, after = self.dead(after, task, error, limit=SCAN)
            ids += [row["id"] for row in page]
            if after is None:
                break
        for jid in ids:
            try:
                done += act(jid)
            except (UnknownJob, ValueError):  # retried or purged meanwhile
                continue
        return done

    # -- workers and periodic tasks ---------------------------------------------
    def workers(self) -> list[dict[str, Any]]:
        """The records of the workers alive now (see ``tasks.worker.presence``)."""
        if self.tasks() is None:
            return []
        now = time.time()
        rows = self.eng.scan_records(R.NS_WORKERS, limit=1000)
        found = [R.unpack(bytes(v)) for _, v in rows]
        return [shown(w) for w in found if alive(w, now)]

    @staticmethod
    def periodic(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Periodic tasks as the living workers announce them, each once, soonest first."""
        by_task: dict[str, dict[str, Any]] = {}
        for worker in workers:
            for p in worker.get("periodic", []):
                seen = by_task.get(p["task"])
                if seen is None or p["next"] < seen["next"]:
                    by_task[p["task"]] = p
        return sorted(by_task.values(), key=lambda p: p["next"])


def window_latency(now: dict[int, int], before: dict[int, int]) -> tuple[Optional[float],
                                                                        Optional[float]]:
    """p50 and p99 (ms) of the starts between two readings of a histogram."""
    delta = {i: n - before.get(i, 0) for i, n in now.items() if n > before.get(i, 0)}
    return percentile(delta, 0.50), percentile(delta, 0.99)
