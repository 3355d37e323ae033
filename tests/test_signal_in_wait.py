"""An exception from a signal handler that ends a blocking call comes out as itself,
and leaves the directory's lock as it was.

Programs turn SIGTERM into ``SystemExit`` and SIGINT into ``KeyboardInterrupt``; both
are raised in the main thread wherever it is, often in a blocking ``dequeue``. With
``threading.Condition`` over a plain lock, about 1 in 1,000 of those came out as
``RuntimeError: release unlocked lock`` (the wait had let go of the lock and not taken
it back), the program's ``except SystemExit`` never ran, and a thread serving clients
beside it could have the lock let go under it.
"""

from __future__ import annotations

import ast
import contextlib
import signal
import threading
from collections.abc import Iterator

import faults
import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")


class Stop(BaseException):
    """What the SIGALRM handler of :func:`alarm_raises` raises (as SystemExit would)."""


@contextlib.contextmanager
def alarm_raises() -> Iterator[None]:
    """SIGALRM raises :class:`Stop` in the main thread while inside; the timer is the
    caller's to set."""
    def handler(signum, frame):
        raise Stop()

    old = signal.signal(signal.SIGALRM, handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)

CHILD = """
import signal, sys, threading, time
import diskqueue as dq

class Stop(BaseException):
    pass

armed = False

def handler(signum, frame):
    global armed
    if armed:
        armed = False
        raise Stop()

q = dq.Queue(sys.argv[1], codec="json")
# Another thread takes the lock over and over, as a thread serving clients does.
done = threading.Event()
errors = []
moved = [0]

def other():
    try:
        while not done.is_set():
            len(q)
            moved[0] += 1
            time.sleep(0.0001)  # (not to hold the GIL: the main thread's waits are the test)
    except BaseException as exc:
        errors.append(repr(exc))

mover = threading.Thread(target=other)
mover.start()
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.00005, 0.00005)
outcomes = {}
for i in range(int(sys.argv[2])):
    try:
        try:  # (inner try: a Stop as Empty leaves the call still lands in the outer one)
            armed = True
            q.dequeue(block=True, timeout=0.05)
        finally:
            armed = False
    except BaseException as exc:
        name = type(exc).__name__ + ("" if isinstance(exc, Stop) else ": " + str(exc))
        outcomes[name] = outcomes.get(name, 0) + 1
signal.setitimer(signal.ITIMER_REAL, 0)
done.set()
mover.join(30)
print(outcomes)
print("mover", errors, moved[0] > 0)
q.enqueue("after")
assert q.dequeue().value == "after"
q.close()
print("closed")
"""


@pytest.mark.timeout(120)
def test_a_signal_handlers_exception_ends_a_blocking_dequeue_as_itself(tmp_path):
    # Before conditions.py: 4 to 17 RuntimeErrors in 20,000 interrupted waits.
    out = faults.run_py(CHILD, str(tmp_path / "q"), "20000", timeout=100)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    outcomes = ast.literal_eval(lines[0])
    assert set(outcomes) == {"Stop"}, outcomes
    assert outcomes["Stop"] > 10000, outcomes  # the handler did interrupt the waits
    assert lines[1] == "mover [] True", lines[1]
    assert lines[2] == "closed"


def test_the_condition_wait_gives_the_lock_back_when_interrupted():
    from diskqueue.engine.conditions import Condition, new_lock

    lock = new_lock()
    cond = Condition(lock)

    with alarm_raises():
        for _ in range(50):
            with pytest.raises(Stop):
                with lock:
                    signal.setitimer(signal.ITIMER_REAL, 0.002)
                    cond.wait(5)
            signal.setitimer(signal.ITIMER_REAL, 0)
            # the lock is free again, and no waiter was left behind for a notify
            assert lock.acquire(blocking=False)
            lock.release()
            assert not cond._waiters


@pytest.mark.timeout(60)
def test_a_durable_write_interrupted_while_it_waits_for_its_round_hands_the_lead_on():
    """A sync=True write waits for the round before it; interrupted there (the signal's
    exception ends its call), it must not keep the lead the round hands it: every later
    durable write of the process would wait for ever."""
    from diskqueue.engine.groupcommit import GroupCommit

    committing = threading.Event()
    go_on = threading.Event()
    rounds: list[list[str]] = []

    def commit(works):
        rounds.append(list(works))
        committing.set()
        go_on.wait(10)  # the fsync of the round the interrupted write waits behind
        return works

    group = GroupCommit(commit)
    first = threading.Thread(target=group.submit, args=("first",))
    first.start()
    assert committing.wait(10)

    with alarm_raises():
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Stop):
            group.submit("interrupted")  # waits behind "first", in the main thread
    go_on.set()
    first.join(10)
    later: list[str] = []
    writer = threading.Thread(target=lambda: later.append(group.submit("later")))
    writer.start()
    writer.join(10)
    assert later == ["later"], "a durable write after the interrupted one never returned"
    assert rounds[0] == ["first"]
    assert "interrupted" not in [w for r in rounds for w in r], \
        "the interrupted write was committed after its call had ended with the exception"
