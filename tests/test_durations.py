"""Every duration the public API takes refuses NaN, and infinity unless it means "for
ever": a ``ValueError`` naming the argument, with nothing changed or enqueued; never a
spin, a hang, or a job run at once. Where infinity means "for ever" (a blocking timeout,
``result(timeout=)``, ``stop(timeout=)``, a grace period) it waits like None."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import diskqueue as dq
from diskqueue._checks import check_duration
from diskqueue.tasks import layout as R

try:
    from .faults import run_py
    from .test_tasks_support import until
except ImportError:
    from faults import run_py
    from test_tasks_support import until

pytestmark = pytest.mark.timeout(60)

NAN = float("nan")
INF = math.inf


def _open(kind: str, path: Any) -> Any:
    return {"queue": dq.Queue, "stack": dq.Stack, "priority": dq.PriorityQueue,
            "prefix": dq.PrefixQueue}[kind](path)


def _add(kind: str, q: Any, value: Any) -> None:
    if kind == "stack":
        q.push(value)
    elif kind == "priority":
        q.enqueue(1, value)
    elif kind == "prefix":
        q.enqueue("p", value)
    else:
        q.enqueue(value)


def _lane(kind: str) -> tuple[Any, ...]:
    return ("p",) if kind == "prefix" else ()


ALL = ("queue", "stack", "priority", "prefix")
RELIABLE = ("queue", "priority", "prefix")
STDLIB = ("queue", "stack", "priority")  # those with queue.Queue's put/get
BLOCKING_BAD = [NAN, -INF, -1]  # a call that does not block ignores a negative timeout


def _take(kind: str, q: Any, many: bool = False) -> Callable[..., Any]:
    """The structure's dequeue (pop on a Stack), with its lane argument bound."""
    name = ("pop" if kind == "stack" else "dequeue") + ("_many" if many else "")
    method = getattr(q, name)
    return lambda *args, **kw: method(*_lane(kind), *args, **kw)


Call = Callable[[str, Any, Any], Any]
# (structure kinds, label, call(kind, q, value), the argument named, values refused)
STRUCTURE_CALLS: list[tuple[tuple[str, ...], str, Call, str, list[Any]]] = [
    (ALL, "take-block", lambda k, q, v: _take(k, q)(block=True, timeout=v), "timeout",
     BLOCKING_BAD),
    (ALL, "take-noblock", lambda k, q, v: _take(k, q)(block=False, timeout=v), "timeout",
     [NAN]),
    (ALL, "take-many", lambda k, q, v: _take(k, q, many=True)(5, block=True, timeout=v),
     "timeout", BLOCKING_BAD),
    (STDLIB, "get", lambda k, q, v: q.get(timeout=v), "timeout", BLOCKING_BAD),
    (STDLIB, "get-noblock", lambda k, q, v: q.get(block=False, timeout=v), "timeout", [NAN]),
    (STDLIB, "put", lambda k, q, v: q.put(9, timeout=v), "timeout", BLOCKING_BAD),
    (RELIABLE, "reserve-timeout",
     lambda k, q, v: q.reserve(*_lane(k), block=True, timeout=v), "timeout", BLOCKING_BAD),
    (RELIABLE, "reserve-lease", lambda k, q, v: q.reserve(*_lane(k), lease=v), "lease",
     [NAN, INF, -INF, -1, 0]),
    (("priority",), "dequeue_by_priority",
     lambda k, q, v: q.dequeue_by_priority(1, block=True, timeout=v), "timeout",
     BLOCKING_BAD),
]
STRUCTURE_CASES = [
    pytest.param(kind, call, name, value, id=f"{kind}-{label}-{value}")
    for kinds, label, call, name, values in STRUCTURE_CALLS for kind in kinds
    for value in values
]


@pytest.mark.parametrize("kind,call,name,value", STRUCTURE_CASES)
def test_structures_refuse_nan_and_negative_durations(tmp_path, kind, call, name, value):
    q = _open(kind, tmp_path / "q")
    try:
        _add(kind, q, "only")
        with pytest.raises(ValueError, match=name):
            call(kind, q, value)
        assert len(q) == 1  # nothing taken, nothing added
        if kind != "stack":
            assert q.in_flight() == 0
        assert [i.value for i in q] == ["only"]
    finally:
        q.close()


@pytest.mark.parametrize("kind", RELIABLE)
def test_an_infinite_lease_is_refused(tmp_path, kind):
    q = _open(kind, tmp_path / "q")
    try:
        _add(kind, q, "only")
        with pytest.raises(ValueError, match="lease"):
            q.reserve(*_lane(kind), lease=INF)
        assert len(q) == 1 and q.in_flight() == 0
    finally:
        q.close()


@pytest.mark.parametrize("kind", ALL)
def test_an_infinite_timeout_waits_for_ever_like_none(tmp_path, kind):
    q = _open(kind, tmp_path / "q")
    got: list[Any] = []
    try:
        take = _take(kind, q)
        waiter = threading.Thread(
            target=lambda: got.append(take(block=True, timeout=INF).value))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive() and not got  # still waiting: not a spin to an error
        _add(kind, q, "late")
        waiter.join(10)
        assert got == ["late"]
        with pytest.raises(dq.Empty):  # infinity is ignored when not blocking
            _take(kind, q)(block=False, timeout=INF)
        if kind in STDLIB:
            x = (1, "x") if kind == "priority" else "x"  # a PriorityQueue puts (priority, v)
            q.put(x, timeout=INF)  # room: returns at once
            assert q.get(timeout=INF) == x
    finally:
        q.close()


def test_a_blocking_put_with_an_infinite_timeout_waits_for_room(tmp_path):
    q = dq.Queue(tmp_path / "q", maxsize=1)
    try:
        q.put(1)
        done = threading.Event()
        putter = threading.Thread(target=lambda: (q.put(2, timeout=INF), done.set()))
        putter.start()
        time.sleep(0.3)
        assert not done.is_set()
        assert q.get() == 1
        putter.join(10)
        assert done.is_set() and q.get() == 2
    finally:
        q.close()


# -- tasks -------------------------------------------------------------------------


@pytest.fixture
def tq(tmp_path):
    tq = dq.TaskQueue(tmp_path / "jobs")

    @tq.task(name="work")
    def work(n: int = 0) -> int:
        return n

    yield tq
    tq.close()


def _nothing_enqueued(tq: dq.TaskQueue) -> None:
    stats = tq.stats().get("default", {"depth": 0, "scheduled": 0})
    assert stats["depth"] == 0 and stats["scheduled"] == 0
    assert tq.scheduled() == [] and tq.pending() == []


BAD = [NAN, INF, -INF, -1]
BAD_IDS = ["nan", "inf", "-inf", "-1"]


@pytest.mark.parametrize("value", BAD, ids=BAD_IDS)
@pytest.mark.parametrize("how", ["task.apply", "tasks.apply", "enqueue_many", "map"])
def test_enqueueing_refuses_a_bad_delay(tq, how, value):
    calls = {
        "task.apply": lambda: tq.registry["work"].apply(args=(1,), delay=value),
        "tasks.apply": lambda: tq.apply("work", (1,), delay=value),
        "enqueue_many": lambda: tq.enqueue_many("work", [1, 2], delay=value),
        "map": lambda: tq.registry["work"].map([1, 2], delay=value),
    }
    with pytest.raises(ValueError, match="delay"):
        calls[how]()
    _nothing_enqueued(tq)


def test_a_delay_past_the_calendar_is_refused(tq):
    with pytest.raises(ValueError, match="delay"):
        tq.registry["work"].apply(delay=1e300)
    _nothing_enqueued(tq)


def test_a_nan_delay_does_not_run_the_job_at_once(tq):
    worker = tq.start(concurrency=1)
    try:
        with pytest.raises(ValueError):
            tq.registry["work"].apply(args=(1,), delay=NAN)
        assert worker.wait_idle(timeout=5)
        assert worker.finished == 0
    finally:
        assert worker.stop()


TASK_OPTIONS = [
    ("backoff", BAD),
    ("max_backoff", BAD),
    ("timeout", [NAN, -INF, -1, 0]),
    ("result_ttl", [NAN, -INF, -1]),
]


@pytest.mark.parametrize("option,value", [
    pytest.param(opt, v, id=f"{opt}={v}") for opt, values in TASK_OPTIONS for v in values
])
def test_task_options_refuse_bad_durations(tq, option, value):
    before = dict(tq.registry)
    with pytest.raises(ValueError, match=option):
        tq.task(name="other", **{option: value})(lambda: None)
    with pytest.raises(ValueError, match=option):
        tq.periodic(every=10, name="tick", **{option: value})(lambda: None)
    assert tq.registry == before


def test_infinity_means_no_limit_for_a_task_timeout_and_result_ttl(tq):
    t = tq.task(name="long", timeout=INF, result_ttl=INF)(lambda: 7)
    assert t.options.timeout is None and t.options.result_ttl is None
    worker = tq.start(concurrency=1)
    try:
        job = t.delay()
        assert job.result(timeout=INF) == 7
        assert job.info().get("result") == 7
    finally:
        assert worker.stop(timeout=INF)


@pytest.mark.parametrize("value", [NAN, INF, -INF, -1, 0, 1e-300,
                                   dt.timedelta(seconds=-1)],
                         ids=["nan", "inf", "-inf", "-1", "0", "1e-300", "-timedelta"])
def test_periodic_every_refuses_bad_periods(tq, value):
    before = dict(tq.registry)
    with pytest.raises(ValueError, match="every"):
        tq.periodic(every=value)(lambda: None)
    assert tq.registry == before


@pytest.mark.parametrize("spec", ["1/.s", "1/0s", "0/s", "1/" + "9" * 400 + "s",
                                  "9" * 400 + "/s", "nan/s", "1/nans", "1/infs", "inf/m"])
def test_rate_limits_refuse_bad_periods(tq, spec):
    with pytest.raises(ValueError, match="rate_limit"):
        tq.task(name="limited", rate_limit=spec)(lambda: None)
    assert "limited" not in tq.registry


def test_rate_limit_periods_that_work(tq):
    for spec, per in (("100/m", 60.0), ("3/10s", 10.0), ("3/0.5s", 0.5), ("5/h", 3600.0)):
        t = tq.task(name=f"limited-{per}", rate_limit=spec)(lambda: None)
        assert t.options.rate_limit == spec


@pytest.mark.parametrize("value", [NAN, INF, -1], ids=["nan", "inf", "-1"])
def test_retry_refuses_a_bad_delay(value):
    with pytest.raises(ValueError, match="delay"):
        dq.Retry(delay=value)


def test_a_huge_backoff_schedules_the_retry_at_the_end_of_time(tmp_path):
    tq = dq.TaskQueue(tmp_path / "jobs")

    @tq.task(name="fails", retries=2, backoff=1e300, max_backoff=1e300)
    def fails() -> None:
        raise RuntimeError("no")

    try:
        job = fails.delay()
        worker = tq.start(concurrency=1)
        try:
            until(lambda: job.state == "retrying", what="retrying")
            assert job.eta is not None  # readable, not an OverflowError
            assert tq._engine().in_flight(R.queue_ns("default")) == 0
        finally:
            assert worker.stop()
    finally:
        tq.close()


@pytest.mark.parametrize("value", [NAN, -INF, -1], ids=["nan", "-inf", "-1"])
def test_job_result_refuses_a_bad_timeout(tq, value):
    job = tq.registry["work"].delay(1)
    with pytest.raises(ValueError, match="timeout"):
        job.result(timeout=value)
    assert job.state == "pending"


@pytest.mark.parametrize("value", [NAN, -INF, -1], ids=["nan", "-inf", "-1"])
def test_worker_stop_and_wait_idle_refuse_a_bad_timeout(tq, value):
    worker = tq.start(concurrency=1)
    try:
        with pytest.raises(ValueError, match="timeout"):
            worker.stop(timeout=value)
        assert not worker.stopped  # still running: it did nothing
        with pytest.raises(ValueError, match="timeout"):
            worker.wait_idle(timeout=value)
        assert tq.registry["work"].delay(5).result(timeout=10) == 5
    finally:
        assert worker.stop(timeout=10)


@pytest.mark.parametrize("value", [NAN, -INF, -1], ids=["nan", "-inf", "-1"])
def test_run_refuses_a_bad_grace_before_starting(tq, value):
    with pytest.raises(ValueError, match="grace"):
        tq.run(grace=value, drain=True)
    assert tq._workers == []


def test_run_with_an_infinite_grace_drains(tq):
    tq.registry["work"].delay(3)
    assert tq.run(grace=INF, drain=True, progress=False) is True


@pytest.mark.parametrize("weight", [NAN, INF], ids=["nan", "inf"])
def test_queue_weights_must_be_finite(tq, weight):
    with pytest.raises(ValueError, match="weight"):
        tq.start(queues={"default": weight})
    assert tq._workers == []


# -- the one checker -----------------------------------------------------------------


def test_check_duration():
    assert check_duration("x", 1) == 1.0 and isinstance(check_duration("x", 1), float)
    assert check_duration("x", dt.timedelta(seconds=2), timedelta=True) == 2.0
    assert check_duration("x", None) is None
    assert check_duration("x", INF, allow_inf=True) is None
    assert check_duration("x", 10**400, allow_inf=True) is None
    for bad in (NAN, INF, -1, 10**400):
        with pytest.raises(ValueError, match="^x must"):
            check_duration("x", bad)
    with pytest.raises(ValueError, match="x must be > 0"):
        check_duration("x", 0, positive=True)
    for wrong in ("1", True, [1], dt.timedelta(1)):
        with pytest.raises(TypeError, match="x must be a number"):
            check_duration("x", wrong)
    with pytest.raises(TypeError):
        check_duration("x", None, allow_none=False)


CLIENT = """
import math, sys, time
import diskqueue as dq
q = dq.Queue(sys.argv[1])
assert q.role == "client", q.role
for call in (lambda: q.dequeue(block=True, timeout=math.nan),
             lambda: q.get(timeout=math.nan),
             lambda: q.put(1, timeout=math.nan),
             lambda: q.reserve(lease=math.nan),
             lambda: q.reserve(block=True, timeout=math.nan)):
    start = time.monotonic()
    try:
        call()
    except ValueError as exc:
        print("refused", round(time.monotonic() - start, 3), exc, flush=True)
print("left", len(q), flush=True)
q.close()
"""


def test_a_client_refuses_nan_before_asking_the_holder(tmp_path):
    """As a client (another process holds the directory) NaN blocked for ever."""
    q = dq.Queue(tmp_path / "q")
    try:
        q.enqueue("only")
        done = run_py(CLIENT, str(tmp_path / "q"), timeout=30)
        assert done.returncode == 0, done.stderr[-2000:]
        refused = [line for line in done.stdout.splitlines() if line.startswith("refused")]
        assert len(refused) == 5, done.stdout
        assert all(float(line.split()[1]) < 1.0 for line in refused)
        assert "left 1" in done.stdout
        assert len(q) == 1 and q.in_flight() == 0
    finally:
        q.close()
