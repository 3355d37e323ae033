"""An exception from a signal handler that ends ``close()`` still lets go of the
directory: the process can open it again at once, and nothing is lost.

``close()`` of the process holding a directory stops its server, waits for the calls
working outside the engine's lock, compacts what was consumed and closes LevelDB. A
``KeyboardInterrupt`` (Ctrl-C) or ``SystemExit`` (a SIGTERM handler) raised in any of
those steps used to leave the engine closed and LevelDB open, its lock held, until the
process exited: an application that caught the exception and opened the queue again
got ``Locked`` by itself. An open that such an exception ended could leave the same
behind, and the process's next open made it a client of itself.
"""

from __future__ import annotations

import ast
import signal

import faults
import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")

CHILD = faults.ONE_INTERRUPT_PER_CALL + """
import random, signal, sys, time
import diskqueue as dq

path, seconds, where = sys.argv[1], float(sys.argv[2]), sys.argv[4]
rng = random.Random(int(sys.argv[3]))
n, opened_as = 0, {}
calls = {"interrupted": 0, "returned": 0}
# The timer is drawn up to a little past how long the call took when it last returned,
# so that about as many calls are cut short as return on a fast machine or a slow one;
# the loop runs on (within a bound) until both have happened often enough.
took = 0.005
start = time.monotonic()
while time.monotonic() < start + seconds or (
        min(calls.values()) < 20 and time.monotonic() < start + 60):
    if where == "open":
        signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.0001, 1.5 * took))
        began = time.monotonic()
        opened = armed_call(False, None, lambda: [dq.Queue(path, codec="json")])
        signal.setitimer(signal.ITIMER_REAL, 0)
        armed = False
        calls["returned" if opened else "interrupted"] += 1
        if opened:
            took = time.monotonic() - began
        if not opened:
            continue
        q = got.pop()
    else:
        q = dq.Queue(path, codec="json", connect_timeout=1)
    opened_as[q.role] = opened_as.get(q.role, 0) + 1
    if q.role != "owner":
        break  # this process still holds the directory it closed
    batch = list(range(n, n + rng.randrange(1, 600)))
    q.enqueue_many(batch)
    acked.update(batch)
    n += len(batch)
    got.extend(item.value for item in q.dequeue_many(rng.randrange(0, len(q) + 1)))
    if where == "open":
        q.close()
        continue
    signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.0001, 1.5 * took))
    began = time.monotonic()
    if armed_call(False, None, lambda: q.close() or []):
        calls["returned"] += 1
        took = time.monotonic() - began
    else:
        calls["interrupted"] += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    armed = False

with dq.Queue(path, codec="json", connect_timeout=1) as q:
    opened_as["at the end"] = q.role
    left = [item.value for item in q.dequeue_many(len(q))] if len(q) else []
print({"opened as": opened_as, "calls": calls})
""" + faults.ACCOUNT_FOR_EVERY_ITEM


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [1, 2])
def test_an_interrupted_close_lets_go_of_the_directory(tmp_path, seed):
    _interrupted(str(tmp_path / "q"), seed, "close")


@pytest.mark.timeout(180)
def test_an_interrupted_open_lets_go_of_the_directory(tmp_path):
    """Likewise an open (``Ctrl-C`` as ``Queue(path)`` runs) that an exception ends."""
    _interrupted(str(tmp_path / "q"), 3, "open")


def _interrupted(path: str, seed: int, where: str) -> None:
    """Interrupt the child's closes or opens (``where``), then account for it all."""
    done = faults.run_py(CHILD, path, "4", str(seed), where, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    runs, outcome = ast.literal_eval(lines[-2]), ast.literal_eval(lines[-1])
    assert set(runs["opened as"]) == {"owner", "at the end"}, (runs, done.stderr[-3000:])
    assert runs["opened as"]["at the end"] == "owner"
    assert runs["calls"]["interrupted"] >= 20, runs  # the timer did come in the call
    assert runs["calls"]["returned"] >= 20, runs
    assert outcome == {"duplicated": 0, "missing": 0, "stray": 0,
                       "left": outcome["left"]}, outcome
