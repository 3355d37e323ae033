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

from typing import Any, Optional

from . import layout as R
from .job import DEAD, PENDING, Job, UnknownJob
from .jobstore import HasStore, JobStore


def _dead_keys(tasks: HasStore, job_id: Optional[str]) -> list[tuple[bytes, dict[str, Any]]]:
    store = tasks.store
    if job_id is not None:
        record = store.read(job_id)
        if record is None:
            raise UnknownJob(f"no job {job_id} in {store.path}")
        if record["state"] != DEAD:
            raise ValueError(f"job {job_id} is {record['state']}, not dead")
        return [(R.dead_key(record["queue"], job_id.encode()), record)]
    out = []
    for key, _ in store.scan(R.NS_DEAD):
        record = store.read(key.split(b"\x00", 1)[1])
        if record is not None:
            out.append((key, record))
    return out


def dead(tasks: HasStore) -> list[Job]:
    """Dead jobs, the most recent first."""
    found = _dead_keys(tasks, None)
    found.sort(key=lambda pair: pair[1].get("finished") or 0, reverse=True)
    return [Job(tasks, rec["id"], rec) for _, rec in found]


def retry(tasks: HasStore, job_id: Optional[str] = None) -> int:
    """Put one dead job (or all of them: ``None``) back in its queue, failures reset,
    each in one batch that runs at most once per death. Returns how many moved; raises
    ``UnknownJob`` or ValueError (not dead) for a ``job_id``."""
    found = _dead_keys(tasks, job_id)
    store = tasks.store
    now = store.clock()
    eng = store.engine()
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
        ops += _take_unique_back(store, rec, jid)
        done = eng.push_unless(R.queue_ns(rec["queue"]), [(R.lane_of(rec["priority"]), jid)],
                               (R.NS_RETRIED, marker), records=ops)
        if done is None:
            moved += 1
    if store.sync and moved:
        eng.sync()
    return moved


def _take_unique_back(store: JobStore, rec: dict[str, Any], jid: bytes) -> R.Ops:
    """The job's ``unique_key`` guard again, unless another job took the key meanwhile
    (that one, enqueued later and still pending or running, keeps it)."""
    found = store.unique_guard(rec)
    if found is None or found[1] not in (None, jid):
        return []
    return [(R.NS_UNIQUE, found[0], jid)]


def purge(tasks: HasStore, job_id: Optional[str] = None) -> int:
    """Delete one dead job (or all: ``None``) for good, in one batch. Returns how many;
    raises ``UnknownJob`` or ValueError (not dead) for a ``job_id``."""
    found = _dead_keys(tasks, job_id)
    ops: list[tuple[bytes, bytes, Optional[bytes]]] = []
    for key, rec in found:
        ops += [(R.NS_DEAD, key, None), (R.NS_JOBS, rec["id"].encode(), None)]
        ops += R.forget_retries(rec)
    if ops:
        tasks.store.write(ops)
    return len(found)
