"""How a task directory is laid out on the engine: namespaces, keys, job records.

A task directory is one engine directory of kind ``"tasks"``:

- one queue namespace per named queue, ``b"q:" + name``; its lanes are priorities,
  encoded so that the engine's ascending lane order runs the *highest* priority first;
  an item holds only the job id;
- record namespaces beside them: the jobs themselves (msgpack maps, see
  :data:`~diskqueue.codecs.TASK_MSGPACK`; a job's ``"coded"`` field names the codec of
  its arguments and result when it is not the default), the schedule
  (delayed jobs and retries, keyed by due time), dead letters, ``unique_key`` guards,
  periodic ticks, result expiry, and counters for ``stats()``.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Optional

from ..codecs import TASK_MSGPACK, encoder
from ..engine import keys

QUEUE_PREFIX = b"q:"
NS_JOBS = b"job"  # job id -> job record
NS_SCHED = b"sched"  # due ms (8 bytes) + job id -> [queue, priority, was it delayed]
NS_MOVED = b"moved"  # a schedule key -> b"": that record was moved into its queue
NS_DEAD = b"dead"  # queue + NUL + job id -> b""
NS_UNIQUE = b"uniq"  # unique_key -> job id
NS_TICK = b"tick"  # task name + NUL + tick ms (8 bytes) -> b"": the last periodic tick
NS_EXPIRE = b"exp"  # expiry ms (8 bytes) + job id -> b"": results to forget
NS_STATS = b"stat"  # queue + NUL + worker id (empty: the base) -> counts
NS_LAT = b"lat"  # queue + NUL + worker id (empty: the base) -> latency histogram
NS_META = b"tq"  # b"format" -> b"1": marks a task directory
NS_WORKERS = b"wrk"  # worker id -> the worker's presence record (a msgpack map)
NS_RETRIED = b"rdead"  # job id + NUL + death number (8 bytes) -> b"": that death was retried

FORMAT = b"1"

# A job's states, as its record stores them (see :mod:`.job` for what they mean).
PENDING = "pending"
SCHEDULED = "scheduled"
STARTED = "started"
RETRYING = "retrying"
SUCCESS = "success"
DEAD = "dead"
STATES = (PENDING, SCHEDULED, STARTED, RETRYING, SUCCESS, DEAD)
FINISHED = (SUCCESS, DEAD)

# record writes riding along with a mutation: (ns, key, value or None to delete)
Ops = list[tuple[bytes, bytes, Optional[bytes]]]
PRIORITY_MAX = 2**63 - 1

# Records are msgpack maps, with tuples, sets, dates, decimals... as ext types (the
# default codec of arguments and results, stored inline: see :mod:`.payload`).
pack = encoder(TASK_MSGPACK.dumps)
unpack = TASK_MSGPACK.loads
# ``pack`` without its wrapper: raises msgpack's own errors as they are (pack the value
# again with ``pack`` for the TypeError that names it).
pack_raw = TASK_MSGPACK.dumps
# For a run of records packed by one thread (enqueue_many): the bytes of ``pack``, but a
# value it cannot hold raises msgpack's error as it is (pack it with ``pack`` for the
# TypeError that names it).
packer = TASK_MSGPACK.packer


def record_template(task: str, queue: str, priority: int) -> dict[str, Any]:
    """The fields every new job of ``task`` in ``queue`` at ``priority`` starts with;
    :func:`fill_record` makes each job's record from a copy of it (so a producer builds
    it once per task and place, not once per job)."""
    return {
        "id": "", "task": task, "args": [], "kwargs": {}, "queue": queue,
        "priority": priority, "state": PENDING, "attempts": 0, "failures": 0,
        "enqueued": 0.0, "ready": 0.0,
    }


def fill_record(template: dict[str, Any], job_id: str, args: Any, kwargs: Any, now: float,
                due: Optional[float] = None, unique_key: Optional[str] = None,
                tick: Optional[float] = None) -> dict[str, Any]:
    """The record of a job just enqueued at ``now``, from a :func:`record_template`:
    pending, or scheduled until ``due``; ``tick`` marks the job of a periodic tick (it
    was ready at the tick). Raises nothing; the values are checked by the caller."""
    rec = template.copy()
    rec["id"] = job_id
    rec["args"] = args
    rec["kwargs"] = kwargs
    rec["enqueued"] = now
    rec["ready"] = now if tick is None else tick
    if due is not None:
        rec.update(state=SCHEDULED, ready=due, eta=due)
    if unique_key is not None:
        rec["unique"] = unique_key
    if tick is not None:
        rec["tick"] = tick
    return rec


# The fields of a new pending job's record that differ from job to job, in their order.
_PER_JOB = ("id", "args", "kwargs", "enqueued", "ready")
# What a new pending job's record holds around :data:`_PER_JOB`: its five constant runs of
# bytes (see :func:`record_frame`).
Frame = tuple[bytes, bytes, bytes, bytes, bytes]
_F64 = struct.Struct(">Bd").pack  # a float as msgpack packs it (float 64)
_STR_HEADS = tuple(bytes((0xA0 | n,)) for n in range(32))  # msgpack fixstr headers
NO_KWARGS = pack({})


def record_frame(template: dict[str, Any]) -> Frame:
    """The bytes of every new pending record of a :func:`record_template` around the
    fields that differ per job: ``pack(fill_record(template, id, args, kwargs, now))``
    is ``f0 + pack(id) + f1 + pack(args) + f2 + pack(kwargs) + f3 + pack(now) + f4 +
    pack(now)`` (a msgpack map is its header, then each key and value packed in turn),
    so a producer packs only what differs (:func:`framed`)."""
    assert list(template)[-1] == "ready" and len(template) < 16  # a fixmap, ready last
    runs: list[bytes] = []
    run = bytearray((0x80 | len(template),))
    for key, value in template.items():
        run += pack(key)
        if key in _PER_JOB:
            runs.append(bytes(run))
            run = bytearray()
        else:
            run += pack(value)
    f0, f1, f2, f3, f4 = runs
    return f0, f1, f2, f3, f4


def framed(frame: Frame, job_id: bytes, args: bytes, kwargs: bytes, now: float,
           tail: Optional[bytes] = None) -> bytes:
    """The bytes of a new pending record (:func:`record_frame`) of the job ``job_id``
    (ASCII) with its packed ``args`` and ``kwargs``, enqueued at ``now``; ``tail``: its
    :func:`frame_tail`, when the caller made it for a batch."""
    f0, f1, f2, f3, f4 = frame
    if tail is None:  # frame_tail() spelled out: a call per delay() costs
        at = _F64(0xCB, now) if type(now) is float else pack(now)
        tail = f3 + at + f4 + at
    n = len(job_id)
    return b"".join((f0, _STR_HEADS[n] if n < 32 else pack(job_id.decode())[:-n], job_id,
                     f1, args, f2, kwargs, tail))


def frame_tail(frame: Frame, now: float) -> bytes:
    """The bytes that end every new pending record enqueued at ``now`` (see
    :func:`framed`): made once for a batch."""
    at = _F64(0xCB, now) if type(now) is float else pack(now)
    return frame[3] + at + frame[4] + at


def new_record(job_id: str, task: str, args: list[Any], kwargs: dict[str, Any], queue: str,
               priority: int, now: float, *, due: Optional[float] = None,
               unique_key: Optional[str] = None, tick: Optional[float] = None
               ) -> dict[str, Any]:
    """:func:`fill_record` of a template made for this one job."""
    return fill_record(record_template(task, queue, priority), job_id, args, kwargs, now,
                       due, unique_key, tick)


def sched_value(queue: str, priority: int, delayed: bool) -> bytes:
    """The value of a schedule record: where the job goes when due, and whether it was
    enqueued with a delay (its record then turns from scheduled to pending)."""
    return pack([queue, priority, delayed])


def queue_ns(name: str) -> bytes:
    """The engine namespace of the queue ``name``."""
    return QUEUE_PREFIX + name.encode("utf-8")



def check_queue(name: Any) -> str:
    """``name`` if it is a valid queue name; raises TypeError (not a str) or ValueError
    (empty, over 200 bytes, or holding NUL)."""
    if not isinstance(name, str):
        raise TypeError(f"queue must be a str, not {type(name).__name__}")
    if not name or len(name.encode("utf-8")) > 200 or "\x00" in name:
        raise ValueError(f"queue name must be 1 to 200 bytes without NUL, not {name!r}")
    return name


def check_priority(priority: Any) -> int:
    """``priority`` as an int; raises TypeError (not an int) or ValueError (beyond
    +/-(2**63 - 1))."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, not {type(priority).__name__}")
    if not -PRIORITY_MAX <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be within +/-(2**63 - 1), not {priority}")
    return int(priority)


def lane_of(priority: int) -> bytes:
    """Higher priority first: the lane of ``p`` is the engine lane of ``-p``."""
    return keys.priority_lane(-priority)



def ms(t: float) -> int:
    """Epoch seconds as whole milliseconds."""
    return int(t * 1000)


LAST_DUE = 253402300799.0  # 9999-12-31 23:59:59 UTC: the latest due time an argument sets


def ms_bytes(t: float) -> bytes:
    """Epoch seconds as 8 big-endian bytes of ms, so keys sort by time."""
    # A due time past what 8 bytes of ms hold (a backoff of 1e300 s) sorts last, not
    # raises: it is "never", and a raise here would leave a job unfinished.
    if not t < 1.8e16:
        return b"\xff" * 8
    return max(ms(t), 0).to_bytes(8, "big")


def sched_key(due: float, job_id: bytes) -> bytes:
    """The schedule key of a job due at ``due``: its time in ms rounded *up*, since the
    scheduler moves a job once the ms of its key has come, and must not start it before
    its time (truncated, a job could start up to 1 ms early)."""
    if not due < 1.8e16:  # as in ms_bytes: "never" sorts last
        return b"\xff" * 8 + job_id
    return max(math.ceil(due * 1000), 0).to_bytes(8, "big") + job_id


def due_of(key: bytes) -> float:
    """The time (epoch seconds) at the head of a schedule or tick key."""
    return int.from_bytes(key[:8], "big") / 1000.0


def dead_key(queue: str, job_id: bytes) -> bytes:
    """The dead-letter index key of a job."""
    return queue.encode("utf-8") + b"\x00" + job_id


def retried_key(job_id: bytes, death: int) -> bytes:
    """The marker that death number ``death`` of a job was retried: ``retry_dead`` pushes
    the job only unless this exists, so two callers racing never both push it."""
    return job_id + b"\x00" + death.to_bytes(8, "big")


def forget_retries(rec: dict[str, Any]) -> Ops:
    """Deletes of a job's retry markers, for the batch that deletes its record."""
    if "deaths" not in rec:
        return []
    jid = rec["id"].encode()
    return [(NS_RETRIED, retried_key(jid, n), None) for n in range(int(rec["deaths"]) + 1)]


def tick_key(name: str, tick: float) -> bytes:
    """The key recording the last tick of the periodic task ``name``."""
    return name.encode("utf-8") + b"\x00" + ms_bytes(tick)
