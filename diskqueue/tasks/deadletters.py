"""The dead-letter set: jobs whose last attempt failed, until retried or purged.

A dead job keeps its record (state ``dead``, with its error) and has an index entry
``queue NUL job id`` in the dead namespace. Retrying pushes it back into its queue and
deletes the index entry in one batch per queue; purging deletes both in one batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from . import records as R
from .job import DEAD, PENDING, Job, UnknownJob

if TYPE_CHECKING:
    from .taskqueue import TaskQueue


def _dead_keys(tasks: TaskQueue, job_id: Optional[str]) -> list[tuple[bytes, dict[str, Any]]]:
    eng = tasks._engine()
    if job_id is not None:
        record = tasks._read_job(job_id)
        if record is None:
            raise UnknownJob(f"no job {job_id} in {tasks._path}")
        if record["state"] != DEAD:
            raise ValueError(f"job {job_id} is {record['state']}, not dead")
        return [(R.dead_key(record["queue"], job_id.encode()), record)]
    out = []
    start = b""
    while True:
        rows = eng.scan_records(R.NS_DEAD, start=start, limit=1000)
        for key, _ in rows:
            record = tasks._read_job(bytes(key).split(b"\x00", 1)[1].decode())
            if record is not None:
                out.append((bytes(key), record))
        if len(rows) < 1000:
            return out
        start = bytes(rows[-1][0]) + b"\x00"


def dead(tasks: TaskQueue) -> list[Job]:
    """Dead jobs, the most recent first."""
    found = _dead_keys(tasks, None)
    found.sort(key=lambda pair: pair[1].get("finished") or 0, reverse=True)
    return [Job(tasks, rec["id"], rec) for _, rec in found]


def retry(tasks: TaskQueue, job_id: Optional[str] = None) -> int:
    """Put one dead job (or all of them: ``None``) back in its queue, failures reset;
    each queue's jobs move in one batch. Returns how many moved."""
    found = _dead_keys(tasks, job_id)
    now = tasks.clock()
    by_queue: dict[str, list[tuple[bytes, dict[str, Any]]]] = {}
    for key, rec in found:
        by_queue.setdefault(rec["queue"], []).append((key, rec))
    eng = tasks._engine()
    for queue, rows in by_queue.items():
        entries, ops = [], []
        for key, rec in rows:
            rec.update(state=PENDING, failures=0, ready=now)
            for field in ("finished", "eta", "progress"):
                rec.pop(field, None)
            jid = rec["id"].encode()
            entries.append((R.lane_of(rec["priority"]), jid))
            ops += [(R.NS_DEAD, key, None), (R.NS_JOBS, jid, R.pack(rec))]
        eng.push(R.queue_ns(queue), entries, records=ops)
    if tasks.sync and found:
        eng.sync()
    return len(found)


def purge(tasks: TaskQueue, job_id: Optional[str] = None) -> int:
    """Delete one dead job (or all: ``None``) for good, in one batch. Returns how many."""
    found = _dead_keys(tasks, job_id)
    ops: list[tuple[bytes, bytes, Optional[bytes]]] = []
    for key, rec in found:
        ops += [(R.NS_DEAD, key, None), (R.NS_JOBS, rec["id"].encode(), None)]
    if ops:
        tasks._engine().write_records(ops)
        if tasks.sync:
            tasks._engine().sync()
    return len(found)
