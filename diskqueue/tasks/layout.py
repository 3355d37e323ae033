"""How a task directory is laid out on the engine: namespaces, keys, job records.

A task directory is one engine directory of kind ``"tasks"``:

- one queue namespace per named queue, ``b"q:" + name``; its lanes are priorities,
  encoded so that the engine's ascending lane order runs the *highest* priority first;
  an item holds only the job id;
- record namespaces beside them: the jobs themselves (msgpack maps), the schedule
  (delayed jobs and retries, keyed by due time), dead letters, ``unique_key`` guards,
  periodic ticks, result expiry, and counters for ``stats()``.
"""

from __future__ import annotations

from typing import Any, Optional

import msgpack

from ..codecs import encoder
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
NS_RETRIED = b"rdead"  # job id + NUL + death number (8 bytes) -> b"": that death was retried

FORMAT = b"1"
# record writes riding along with a mutation: (ns, key, value or None to delete)
Ops = list[tuple[bytes, bytes, Optional[bytes]]]
PRIORITY_MAX = 2**63 - 1

pack = encoder(msgpack.packb)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def queue_ns(name: str) -> bytes:
    return QUEUE_PREFIX + name.encode("utf-8")


def queue_of(ns: bytes) -> str:
    return ns[len(QUEUE_PREFIX):].decode("utf-8", "replace")


def check_queue(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"queue must be a str, not {type(name).__name__}")
    if not name or len(name.encode("utf-8")) > 200 or "\x00" in name:
        raise ValueError(f"queue name must be 1 to 200 bytes without NUL, not {name!r}")
    return name


def check_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, not {type(priority).__name__}")
    if not -PRIORITY_MAX <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be within +/-(2**63 - 1), not {priority}")
    return int(priority)


def lane_of(priority: int) -> bytes:
    """Higher priority first: the lane of ``p`` is the engine lane of ``-p``."""
    return keys.priority_lane(-priority)


def priority_of(lane: bytes) -> int:
    return -keys.lane_priority(lane)


def ms(t: float) -> int:
    return int(t * 1000)


LAST_DUE = 253402300799.0  # 9999-12-31 23:59:59 UTC: the latest due time an argument sets


def ms_bytes(t: float) -> bytes:
    # A due time past what 8 bytes of ms hold (a backoff of 1e300 s) sorts last, not
    # raises: it is "never", and a raise here would leave a job unfinished.
    if not t < 1.8e16:
        return b"\xff" * 8
    return max(ms(t), 0).to_bytes(8, "big")


def sched_key(due: float, job_id: bytes) -> bytes:
    return ms_bytes(due) + job_id


def due_of(key: bytes) -> float:
    return int.from_bytes(key[:8], "big") / 1000.0


def dead_key(queue: str, job_id: bytes) -> bytes:
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
    return name.encode("utf-8") + b"\x00" + ms_bytes(tick)


def error_info(exc: BaseException, tb: str) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc), "traceback": tb}
