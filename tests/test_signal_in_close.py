"""An exception from a signal handler that ends ``close()`` still lets go of the
directory: the process can open it again at once, and nothing is lost.

``close()`` of the process holding a directory stops its server, waits for the calls
working outside the engine's lock, compacts what was consumed and closes LevelDB. A
``KeyboardInterrupt`` (Ctrl-C) or ``SystemExit`` (a SIGTERM handler) raised in any of
those steps used to leave the engine closed and LevelDB open, its lock held, until the
process exited: an application that caught the exception and opened the queue again
got ``Locked`` by itself.
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

path, seconds = sys.argv[1], float(sys.argv[2])
rng = random.Random(int(sys.argv[3]))
n, opened_as = 0, {}
closes = {"interrupted": 0, "returned": 0}
end = time.monotonic() + seconds
while time.monotonic() < end:
    q = dq.Queue(path, codec="json", connect_timeout=1)
    opened_as[q.role] = opened_as.get(q.role, 0) + 1
    if q.role != "owner":
        break  # this process still holds the directory it closed
    batch = list(range(n, n + rng.randrange(1, 600)))
    q.enqueue_many(batch)
    acked.update(batch)
    n += len(batch)
    got.extend(item.value for item in q.dequeue_many(rng.randrange(0, len(q) + 1)))
    signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.0001, 0.006))
    if armed_call(False, None, lambda: q.close() or []):
        closes["returned"] += 1
    else:
        closes["interrupted"] += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    armed = False

with dq.Queue(path, codec="json", connect_timeout=1) as q:
    opened_as["at the end"] = q.role
    left = [item.value for item in q.dequeue_many(len(q))] if len(q) else []
print({"opened as": opened_as, "closes": closes})
""" + faults.ACCOUNT_FOR_EVERY_ITEM


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [1, 2])
def test_an_interrupted_close_lets_go_of_the_directory(tmp_path, seed):
    done = faults.run_py(CHILD, str(tmp_path / "q"), "4", str(seed), timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    runs, outcome = ast.literal_eval(lines[-2]), ast.literal_eval(lines[-1])
    assert set(runs["opened as"]) == {"owner", "at the end"}, (runs, done.stderr[-3000:])
    assert runs["opened as"]["at the end"] == "owner"
    assert runs["closes"]["interrupted"] >= 10, runs  # the timer did come in close()
    assert runs["closes"]["returned"] >= 10, runs
    assert outcome == {"duplicated": 0, "missing": 0, "stray": 0,
                       "left": outcome["left"]}, outcome
