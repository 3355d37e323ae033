"""The dead-letter set: jobs whose last attempt failed, until retried or purged.

A dead job keeps its record (state ``dead``, with its error and ``deaths``, how many
times it died) and has an index entry ``queue NUL job id`` in the dead namespace.

Retrying a job is one batch, made only unless the marker of that death exists (the
engine checks and writes under one lock, for every process): push the job back into
its queue, delete its index entry, store its record as pending, write the marker, and
take its ``unique_key`` back. So two ``retry_dead`` calls racing (threads or processes)
never both push a job, and a caller that read the job as dead before another retried
it pushes nothing. The markers go with the job's record. Purging deletes the record and
the index entry in one batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from . import layout as R
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
    """Put one dead job (or all of them: ``None``) back in its queue, failures reset,
    each in one batch that runs at most once per death. Returns how many moved."""
    found = _dead_keys(tasks, job_id)
    now = tasks.clock()
    eng = tasks._engine()
    moved = 0
    for key, rec in found:
        if rec["state"] != DEAD:
            continue
        jid = rec["id"].encode()
        rec["deaths"] = death = int(rec.get("deaths", 0))  # 0: died before deaths were counted
        marker = R.retried_key(jid, death)
        rec.update(state=PENDING, failures=0, ready=now)
        for field in ("finished", "eta", "progress"):
            rec.pop(field, None)
        ops: R.Ops = [(R.NS_DEAD, key, None), (R.NS_JOBS, jid, R.pack(rec)),
                      (R.NS_RETRIED, marker, b"")]
        ops += _take_unique_back(eng, rec, jid)
        done = eng.push_unless(R.queue_ns(rec["queue"]), [(R.lane_of(rec["priority"]), jid)],
                               (R.NS_RETRIED, marker), records=ops)
        if done is None:
            moved += 1
    if tasks.sync and moved:
        eng.sync()
    return moved


def _take_unique_back(eng: Any, rec: dict[str, Any], jid: bytes) -> R.Ops:
    """The job's ``unique_key`` guard again, unless another job took the key meanwhile
    (that one, enqueued later and still pending or running, keeps it)."""
    key = rec.get("unique")
    if key is None:
        return []
    guard = key.encode("utf-8")
    holder = eng.get_record(R.NS_UNIQUE, guard)
    if holder is not None and bytes(holder) != jid:
        return []
    return [(R.NS_UNIQUE, guard, jid)]


def purge(tasks: TaskQueue, job_id: Optional[str] = None) -> int:
    """Delete one dead job (or all: ``None``) for good, in one batch. Returns how many."""
    found = _dead_keys(tasks, job_id)
    ops: list[tuple[bytes, bytes, Optional[bytes]]] = []
    for key, rec in found:
        ops += [(R.NS_DEAD, key, None), (R.NS_JOBS, rec["id"].encode(), None)]
        ops += R.forget_retries(rec)
    if ops:
        tasks._engine().write_records(ops)
        if tasks.sync:
            tasks._engine().sync()
    return len(found)
