"""The enqueue path: records made from a per-task template, one write per ``delay()``,
ids made in blocks for ``enqueue_many``, and the engine's one-entry and one-lane pushes.

Each shortcut must write exactly what the long way wrote: the same record bytes, the same
queue items and pointers (seen again after a reopen), the same errors with nothing written.
"""

from __future__ import annotations

import math
import random
import threading
import time

import pytest

import diskqueue as dq
from diskqueue.engine import keys
from diskqueue.engine.engine import Engine
from diskqueue.tasks import Middleware
from diskqueue.tasks import layout as R
from diskqueue.tasks.enqueue import PLACES

try:
    from .test_sync_trace import traced, unsynced_at_returns
    from .test_tasks_support import FakeClock
except ImportError:
    from test_sync_trace import traced, unsynced_at_returns
    from test_tasks_support import FakeClock


def _queue(path, **options):
    """A TaskQueue in ``path`` with one task, ``take(x) -> x``."""
    tq = dq.TaskQueue(path / "jobs", **options)

    @tq.task
    def take(x):
        return x

    return tq, take


def _by_hand(job_id, task, args, kwargs, queue, priority, now, due=None, unique=None,
             tick=None):
    """A new job's record spelled out field by field, in the order it is stored."""
    rec = {"id": job_id, "task": task, "args": args, "kwargs": kwargs, "queue": queue,
           "priority": priority, "state": "pending", "attempts": 0, "failures": 0,
           "enqueued": now, "ready": now if tick is None else tick}
    if due is not None:
        rec.update(state="scheduled", ready=due, eta=due)
    if unique is not None:
        rec["unique"] = unique
    if tick is not None:
        rec["tick"] = tick
    return rec


def test_records_from_a_template_are_byte_for_byte_the_records_spelled_out():
    template = R.record_template("send", "mail", -3)
    cases = [
        dict(),
        dict(due=1_700_000_123.25),
        dict(unique="order-42"),
        dict(due=1_700_000_999.5, unique="u"),
        dict(tick=1_700_000_000.0),
    ]
    args, kwargs = [1, (2, 3), {"x"}], {"when": 1.5, "who": "ada"}
    for more in cases:
        made = R.fill_record(template, "abc000001", args, kwargs, 1_700_000_000.5,
                             due=more.get("due"), unique_key=more.get("unique"),
                             tick=more.get("tick"))
        spelled = _by_hand("abc000001", "send", args, kwargs, "mail", -3, 1_700_000_000.5,
                           **more)
        assert list(made) == list(spelled) and made == spelled
        assert R.pack(made) == R.pack(spelled)
        assert R.packer()(made) == R.pack(made)
        assert R.new_record("abc000001", "send", args, kwargs, "mail", -3, 1_700_000_000.5,
                            due=more.get("due"), unique_key=more.get("unique"),
                            tick=more.get("tick")) == spelled
    # the template itself is never changed by the records made from it
    assert template == R.record_template("send", "mail", -3)


def test_every_way_to_enqueue_stores_the_record_it_always_stored(tmp_path):
    clock = FakeClock(1_700_000_000.0)
    tq = dq.TaskQueue(tmp_path / "jobs", clock=clock)

    @tq.task(queue="mail", priority=2)
    def send(to, subject="hi"):
        return to

    jobs = [
        send.delay("a@x", subject="s"),
        send.apply(("b@x",), {}, priority=7, queue="other"),
        send.apply(("c@x",), delay=30),
        send.apply(("d@x",), unique_key="k1"),
        tq.enqueue("send", "e@x"),
        tq.enqueue("unregistered", 1, two=2),
        *send.map([("f@x",), (("g@x",), {"subject": "t"})]),
        *tq.enqueue_many("send", (c for c in [("h@x",), "i@x"]), priority=-1),
        *tq.enqueue_many("send", [("j@x",)], delay=5),
    ]
    now = 1_700_000_000.0
    want = [
        _by_hand(jobs[0].id, "send", ["a@x"], {"subject": "s"}, "mail", 2, now),
        _by_hand(jobs[1].id, "send", ["b@x"], {}, "other", 7, now),
        _by_hand(jobs[2].id, "send", ["c@x"], {}, "mail", 2, now, due=now + 30),
        _by_hand(jobs[3].id, "send", ["d@x"], {}, "mail", 2, now, unique="k1"),
        _by_hand(jobs[4].id, "send", ["e@x"], {}, "mail", 2, now),
        _by_hand(jobs[5].id, "unregistered", [1], {"two": 2}, "default", 0, now),
        _by_hand(jobs[6].id, "send", ["f@x"], {}, "mail", 2, now),
        _by_hand(jobs[7].id, "send", ["g@x"], {"subject": "t"}, "mail", 2, now),
        _by_hand(jobs[8].id, "send", ["h@x"], {}, "mail", -1, now),
        _by_hand(jobs[9].id, "send", ["i@x"], {}, "mail", -1, now),
        _by_hand(jobs[10].id, "send", ["j@x"], {}, "mail", 2, now, due=now + 5),
    ]
    eng = tq._engine()
    for job, rec in zip(jobs, want, strict=True):
        assert eng.get_record(R.NS_JOBS, job.id.encode()) == R.pack(rec)
        assert job.snapshot() == rec  # the handle holds what was written
    assert len({job.id for job in jobs}) == len(jobs)
    stats = tq.stats()
    assert stats["mail"]["depth"] == 7 and stats["other"]["depth"] == 1
    assert stats["default"]["depth"] == 1 and stats["mail"]["scheduled"] == 2
    tq.close()


def test_more_places_than_are_kept_still_run_highest_priority_first(tmp_path):
    tq = dq.TaskQueue(tmp_path / "jobs")
    order = []

    @tq.task
    def note(p):
        order.append(p)

    priorities = list(range(-(PLACES // 2) - 20, PLACES // 2 + 20))
    random.Random(7).shuffle(priorities)
    for p in priorities:
        note.apply((p,), priority=p)
    assert len(tq._enqueuer._places) == PLACES  # bounded
    tq.run(concurrency=1, drain=True, progress=False)
    assert order == sorted(priorities, reverse=True)
    tq.close()


def test_ids_stay_unique_with_threads_enqueueing_one_at_a_time_and_in_batches(tmp_path):
    tq, take = _queue(tmp_path)
    got: list[list[str]] = [[] for _ in range(6)]

    def one(k):
        got[k] += [take.delay(i).id for i in range(300)]

    def batches(k):
        for _ in range(6):
            got[k] += [j.id for j in tq.enqueue_many("take", list(range(50)))]

    threads = [threading.Thread(target=one if k % 2 else batches, args=(k,))
               for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for part in got for i in part]
    assert len(ids) == 3 * 300 + 3 * 300 and len(set(ids)) == len(ids)
    stored = {bytes(k).decode() for k, _ in tq.store.scan(R.NS_JOBS)}
    assert stored == set(ids)
    assert tq.stats()["default"]["depth"] == len(ids)
    tq.close()


def test_a_batch_with_one_value_msgpack_cannot_hold_names_it_and_writes_nothing(tmp_path):
    tq, take = _queue(tmp_path)
    take.delay(0)
    for bad in (2**70, object(), complex(1, 2)):  # OverflowError, TypeError, TypeError
        calls = [((i,), {}) for i in range(20)] + [((1,), {"x": bad})] + [(5,)]
        with pytest.raises(TypeError, match=r"argument 'x' \(\w+\) cannot be stored"):
            tq.enqueue_many("take", calls)
        with pytest.raises(TypeError, match=r"argument 0 \(\w+\) cannot be stored"):
            take.delay(bad)
    assert len(tq._engine().scan_records(R.NS_JOBS)) == 1
    assert tq.stats()["default"]["depth"] == 1
    # the batch after a refused one is whole and readable
    jobs = tq.enqueue_many("take", [(i,) for i in range(30)])
    assert [j.args for j in jobs] == [[i] for i in range(30)]
    assert tq.stats()["default"]["depth"] == 31
    tq.close()


def test_a_hook_refusing_one_call_of_a_batch_writes_none_of_it(tmp_path):
    seen = []

    class Veto(Middleware):
        def before_enqueue(self, job):
            seen.append(job.args[0])
            if job.args == [3]:
                raise PermissionError("not 3")

    tq, take = _queue(tmp_path, middleware=[Veto()])
    with pytest.raises(PermissionError):
        take.map(range(6))
    assert seen == [0, 1, 2, 3]
    assert tq.stats()["default"]["depth"] == 0
    assert tq._engine().scan_records(R.NS_JOBS) == []
    tq.close()


def test_a_job_is_never_due_before_its_time(tmp_path):
    rng = random.Random(3)
    for _ in range(20_000):
        due = 1_700_000_000 + rng.random() * 1000
        assert R.due_of(R.sched_key(due, b"j")) >= due
        assert R.due_of(R.sched_key(due, b"j")) - due < 0.0011
    assert R.sched_key(1e300, b"j") == b"\xff" * 8 + b"j"
    assert R.sched_key(math.nan, b"j") == b"\xff" * 8 + b"j"
    assert R.sched_key(-5.0, b"j") == bytes(8) + b"j"

    clock = FakeClock(1_700_000_000.0)
    tq, take = _queue(tmp_path, clock=clock)
    worker = tq.start(concurrency=1)
    try:
        # due 0.4 ms from now: within the ms the clock is in, which the scheduler, woken
        # by the enqueue, treats as come (a key truncated to that ms was moved at once)
        job = take.apply((1,), delay=0.0004)
        first = take.delay(0)
        assert first.result(timeout=10) == 0
        time.sleep(0.3)
        assert job.state == "scheduled"
        clock.advance(0.002)  # the ms after the one it is due in has come
        assert job.result(timeout=10) == 1
    finally:
        worker.stop()
        tq.close()


def _open(path: str) -> Engine:
    eng = Engine(path)
    eng.ensure_kind("tasks", ())
    return eng


def _pointers(eng: Engine, ns: bytes) -> dict[bytes, tuple[int, int]]:
    sp = eng._spaces[ns]
    return {lane: (ln.head, ln.tail) for lane, ln in sp.lanes.items()}


def test_one_entry_pushes_with_records_land_whole_and_survive_a_reopen(tmp_path):
    path = str(tmp_path / "e")
    eng = _open(path)
    lane = keys.priority_lane(0)
    eng.write_records([(b"r", b"gone", b"x")])
    big = b"v" * (2 * 1024 * 1024)  # past the size a reused write batch holds
    eng.push(b"q", [(lane, b"a")], records=[(b"r", b"a", b"ra")])
    eng.push(b"q", [(lane, b"b")], records=[(b"r", b"b", big)])
    eng.push(b"q", [(lane, b"c")], records=[(b"r", b"c", b"rc"), (b"r", b"gone", None)])
    eng.push(b"q", [(lane, b"d")])
    with pytest.raises(dq.Full):
        eng.push(b"q", [(lane, b"e")], maxsize=4)
    before = _pointers(eng, b"q")
    eng.close()
    eng = _open(path)
    assert _pointers(eng, b"q") == before == {lane: (1, 5)}
    assert eng.get_record(b"r", b"a") == b"ra" and eng.get_record(b"r", b"b") == big
    assert eng.get_record(b"r", b"c") == b"rc" and eng.get_record(b"r", b"gone") is None
    assert [bytes(e[3]) for e in eng.take(b"q", 10)] == [b"a", b"b", b"c", b"d"]
    eng.close()


def test_one_push_of_interleaved_lanes_gives_each_lane_its_next_seqs(tmp_path):
    path = str(tmp_path / "e")
    eng = _open(path)
    hi, lo = keys.priority_lane(-5), keys.priority_lane(5)
    eng.push(b"q", [(lo, b"lo0")])
    entries = [(hi, b"hi1"), (hi, b"hi2"), (lo, b"lo1"), (hi, b"hi3"), (lo, b"lo2"),
               (lo, b"lo3"), (hi, b"hi4")]
    out = eng.push(b"q", entries)
    assert [seq for seq, _ in out] == [1, 2, 2, 3, 3, 4, 4]
    assert len({key for _, key in out}) == len(out)
    eng.close()
    eng = _open(path)
    assert _pointers(eng, b"q") == {hi: (1, 5), lo: (1, 5)}
    assert [bytes(e[3]) for e in eng.take(b"q", 20)] == [
        b"hi1", b"hi2", b"hi3", b"hi4", b"lo0", b"lo1", b"lo2", b"lo3"]
    eng.close()


SYNC_CHILD = r"""
import os, sys
import diskqueue.engine.store
diskqueue.engine.store._WRITE_BUFFER = 64 * 1024  # a log switch every ~64 KiB
import diskqueue as dq

def returned():
    os.write(1, b"DQ-RETURNED\n")

tq = dq.TaskQueue(sys.argv[1], sync=True)

@tq.task
def job(i, pad=""):
    return i

for i in range(int(sys.argv[2])):
    job.delay(i, pad="p" * 100)
    returned()
    if i % 10 == 0:
        tq.enqueue_many("job", [(k,) for k in range(40)])
        returned()
        job.apply((i,), delay=60)
        returned()
        job.apply((i,), unique_key=f"u{i}")
        returned()
tq.close()
"""


@pytest.mark.timeout(300)
def test_every_returned_enqueue_of_a_sync_task_queue_was_fsynced(tmp_path):
    """``TaskQueue(sync=True)``: each ``delay``, ``enqueue_many``, delayed and unique
    ``apply`` returns only once every byte it wrote is fsynced, across log switches."""
    calls = 600
    trace, switches = traced(SYNC_CHILD, str(tmp_path / "trace"), str(tmp_path / "jobs"),
                             str(calls))
    assert switches >= 3, f"only {switches} log files: no log switch to test"
    markers, problems = unsynced_at_returns(trace)
    assert markers == calls + 3 * (calls // 10)
    assert not problems, f"{len(problems)} of {markers} enqueues returned with bytes " \
        f"not fsynced, e.g. {problems[:3]}"
