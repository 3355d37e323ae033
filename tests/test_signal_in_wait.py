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
import signal

import faults
import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")

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
    armed = True
    try:
        q.dequeue(block=True, timeout=0.05)
    except BaseException as exc:
        name = type(exc).__name__ + ("" if isinstance(exc, Stop) else ": " + str(exc))
        outcomes[name] = outcomes.get(name, 0) + 1
    armed = False
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

    class Stop(BaseException):
        pass

    def handler(signum, frame):
        raise Stop()

    old = signal.signal(signal.SIGALRM, handler)
    try:
        for _ in range(50):
            signal.setitimer(signal.ITIMER_REAL, 0.001)
            with pytest.raises(Stop):
                with lock:
                    cond.wait(5)
            signal.setitimer(signal.ITIMER_REAL, 0)
            # the lock is free again, and no waiter was left behind for a notify
            assert lock.acquire(blocking=False)
            lock.release()
            assert not cond._waiters
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
