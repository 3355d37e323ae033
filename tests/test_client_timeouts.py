"""A holder that is alive but not answering (SIGSTOP) hangs nobody (issue 9, item 6).

Opening, and each call of a client, give up after ``connect_timeout`` seconds (a
blocking call after its own timeout first) with ``Locked`` naming the holder's pid. A
call that gave up says whether it may still take effect: plain ``Locked`` when nothing
reached the holder or the holder refused it, ``OutcomeUnknown`` when it was sent. Real
processes, real SIGSTOP/SIGCONT.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import faults
import pytest

import diskqueue as dq
from diskqueue.sharing import client as remote

HOLDER = r"""
import sys, time, diskqueue as dq
q = dq.Queue(sys.argv[1])
print("role", q.role, flush=True)
time.sleep(600)
"""
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="waits for SIGSTOP to land by reading /proc")
BOUND = 1.5  # connect_timeout of these tests
SLACK = 3.0  # a loaded machine may take this much longer to give up


@contextlib.contextmanager
def holder(path: str) -> Iterator[faults.Child]:
    child = faults.Child(HOLDER, path)
    try:
        assert child.wait_lines(1, timeout=30) == ["role owner"]
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.proc.pid, signal.SIGCONT)
        child.kill()


def stop(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until it is stopped (the signal lands asynchronously)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop")


@contextlib.contextmanager
def stopped(child: faults.Child) -> Iterator[None]:
    stop(child.proc.pid)
    try:
        yield
    finally:
        os.kill(child.proc.pid, signal.SIGCONT)


def timed(fn, *args, **kwargs) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - the test looks at what it was
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def values(q: dq.Queue) -> list[object]:
    return [item.value for item in q]


def test_opening_while_the_holder_is_stopped_gives_up_naming_it(tmp_path):
    path = str(tmp_path / "q")
    with holder(path) as child, stopped(child):
        exc, took = timed(dq.Queue, path, connect_timeout=BOUND)
        assert isinstance(exc, dq.Locked), exc
        assert exc.pid == child.proc.pid
        assert str(child.proc.pid) in str(exc)
        assert BOUND - 0.1 <= took < BOUND + SLACK


def test_task_queue_takes_connect_timeout_too(tmp_path):
    path = str(tmp_path / "t")
    tq = dq.TaskQueue(path, connect_timeout=BOUND)
    tq.close()
    with pytest.raises(ValueError, match="connect_timeout"):
        dq.TaskQueue(path, connect_timeout=float("nan"))
    with pytest.raises(TypeError, match="connect_timeout"):
        dq.Queue(str(tmp_path / "q"), connect_timeout="10")


def test_a_call_that_reached_a_stopped_holder_raises_outcome_unknown(tmp_path):
    """The request was sent: it may have taken effect. Here the holder reads it only
    after its deadline, so it refuses it: "late" never lands."""
    path = str(tmp_path / "q")
    with holder(path) as child, dq.Queue(path, connect_timeout=BOUND) as q:
        assert q.role == "client"
        q.enqueue("before")
        with stopped(child):
            exc, took = timed(q.enqueue, "late")
            assert isinstance(exc, dq.OutcomeUnknown), exc
            assert isinstance(exc, dq.Locked) and exc.pid == child.proc.pid
            assert "may have taken effect" in str(exc)
            assert BOUND - 0.1 <= took < BOUND + SLACK
        # running again, it answers: the same handle carries on
        q.enqueue("after")
        assert values(q) == ["before", "after"]


def test_a_take_that_gave_up_loses_nothing(tmp_path):
    path = str(tmp_path / "q")
    with holder(path) as child, dq.Queue(path, connect_timeout=BOUND) as q:
        q.enqueue_many(["a", "b"])
        with stopped(child):
            exc, _ = timed(q.dequeue)
            assert isinstance(exc, dq.OutcomeUnknown), exc
        deadline = time.monotonic() + 10
        while q.in_flight() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert values(q) == ["a", "b"]
        assert q.dequeue().value == "a"


def test_a_request_that_never_got_through_is_plain_locked(tmp_path):
    """An item too big for the socket's buffer cannot be sent whole to a stopped holder:
    nothing reached it, so the error says so (not OutcomeUnknown) and nothing lands."""
    path = str(tmp_path / "q")
    with holder(path) as child, dq.Queue(path, connect_timeout=BOUND) as q:
        q.enqueue("small")
        with stopped(child):
            exc, took = timed(q.enqueue, b"x" * (8 << 20))
            assert type(exc) is dq.Locked, exc
            assert "nothing was done" in str(exc)
            assert took < BOUND + SLACK
        assert values(q) == ["small"]


def test_a_blocking_read_waits_its_own_timeout_then_the_bound(tmp_path):
    path = str(tmp_path / "q")
    with holder(path) as child, dq.Queue(path, connect_timeout=BOUND) as q:
        with stopped(child):
            exc, took = timed(q.dequeue, block=True, timeout=1.0)
            assert isinstance(exc, dq.OutcomeUnknown), exc
            assert 1.0 + BOUND - 0.1 <= took < 1.0 + BOUND + SLACK
        q.enqueue("x")
        assert q.dequeue(block=True, timeout=5).value == "x"


def test_a_blocking_read_without_timeout_is_not_stuck_for_ever(tmp_path, monkeypatch):
    monkeypatch.setattr(remote, "BLOCK_SLICE", 1.0)
    path = str(tmp_path / "q")
    with holder(path) as child, dq.Queue(path, connect_timeout=BOUND) as q:
        # while the holder answers, a block without timeout outlasts many slices
        exc, took = timed(q.dequeue, block=True, timeout=2.5)
        assert isinstance(exc, dq.Empty) and took >= 2.4
        with stopped(child):
            exc, took = timed(q.get)  # block=True, no timeout
            assert isinstance(exc, dq.Locked), exc
            assert took < 1.0 + BOUND + SLACK


def test_a_holder_that_resumes_past_the_deadline_refuses_the_call(tmp_path):
    """A blocking call waits longer than its deadline to start: the holder, running
    again after that deadline, refuses it, and the caller learns nothing was done."""
    path = str(tmp_path / "q")
    with holder(path) as child, dq.Queue(path, connect_timeout=BOUND) as q:
        q.enqueue("keep")
        stop(child.proc.pid)
        try:
            started = time.monotonic()
            threading.Timer(BOUND + 1.0, os.kill, (child.proc.pid, signal.SIGCONT)).start()
            with pytest.raises(dq.Locked) as caught:
                q.dequeue(block=True, timeout=10)
            took = time.monotonic() - started
        finally:
            os.kill(child.proc.pid, signal.SIGCONT)
        assert type(caught.value) is dq.Locked, caught.value
        assert "before its deadline" in str(caught.value)
        assert took < 10
        assert values(q) == ["keep"]


def test_a_put_waiting_for_room_without_timeout_waits_across_slices(tmp_path, monkeypatch):
    monkeypatch.setattr(remote, "BLOCK_SLICE", 0.5)
    path = str(tmp_path / "q")
    with holder(path), dq.Queue(path, maxsize=1, connect_timeout=BOUND) as q:
        q.put("a")
        done: list[float] = []
        started = time.monotonic()
        putter = threading.Thread(target=lambda: (q.put("b"), done.append(time.monotonic())))
        putter.start()
        time.sleep(1.6)  # three slices ran out meanwhile
        assert not done
        assert q.get() == "a"
        putter.join(timeout=10)
        assert done and done[0] - started >= 1.5
        assert q.get(timeout=5) == "b"


def test_the_errors_of_a_call_that_gave_up_cross_processes_intact():
    """A process pool sends a task's exception back pickled: pid and message survive."""
    import pickle

    for exc in (dq.Locked("/q", 41, ", which did not answer"), dq.OutcomeUnknown("/q", 42, 2.5)):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc) and back.pid == exc.pid
