"""An exception from a signal handler that ends a call after its write landed leaves
the directory's pointers in step with the disk.

A signal handler runs in the main thread between two steps of what it is doing; one
that raises (``KeyboardInterrupt`` from Ctrl-C, ``SystemExit`` from a SIGTERM handler)
could end a dequeue after LevelDB deleted the item and before the engine moved the
head in memory. The next take then found the item missing (``Corrupted``), and the next
push wrote the stale head back to disk, so the directory stayed ``Corrupted`` after a
reopen: a soak's holder, sent SIGTERM in a dequeue, did exactly that. Here a timer
interrupts the calls of each structure at random points, one exception per call as a
real signal gives, and every item must come out once: taken by a call that returned,
left at the end, or taken by an interrupted call (a dequeue interrupted after its
delete is at-most-once, as one whose process died; an interrupted reservation goes
back to the front).
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

kind, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
rng = random.Random(7)
q = getattr(dq, kind)(path, codec="json")

def put(v):
    if kind == "PriorityQueue":
        q.enqueue(rng.choice((0, 1, 2)), v)
    elif kind == "PrefixQueue":
        q.enqueue(rng.choice("abc"), v)
    elif kind == "Stack":
        q.push(v)
    else:
        q.enqueue(v)

def take():
    if kind == "PrefixQueue":
        for p in rng.sample("abc", 3):
            try:
                return [q.dequeue(p).value]
            except dq.Empty:
                pass
        raise dq.Empty("all three prefixes")
    if kind == "Stack":
        return [q.pop().value]
    if rng.random() < 0.3:
        item = q.reserve(lease=60)
        if rng.random() < 0.3:
            q.nack(item)
            return []
        q.ack(item)
        return [item.value]
    return [q.dequeue().value]

n = 0
signal.setitimer(signal.ITIMER_REAL, 0.0003, 0.00037)
end = time.monotonic() + seconds
while time.monotonic() < end:
    putting = rng.random() < 0.5 or len(acked) - len(got) < 10
    if putting:
        n += 1
    try:
        armed_call(putting, n, (lambda: put(n)) if putting else take)
    except dq.Corrupted:
        counts["corrupted"] += 1
        break
    except dq.Empty:
        pass
signal.setitimer(signal.ITIMER_REAL, 0)
q.close()
q = getattr(dq, kind)(path, codec="json")
left = []
try:
    while True:
        left.extend(take())
except dq.Empty:
    pass
except dq.Corrupted:
    counts["corrupted"] += 1
q.close()
print(counts)
""" + faults.ACCOUNT_FOR_EVERY_ITEM


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["Queue", "Stack", "PriorityQueue", "PrefixQueue"])
def test_a_signal_handlers_exception_after_a_write_leaves_every_item_once(tmp_path, kind):
    # Before: Corrupted within a few hundred calls (about one interrupted call in four).
    out = faults.run_py(CHILD, kind, str(tmp_path / "q"), "2.5", timeout=100)
    assert out.returncode == 0, out.stderr[-3000:]
    counts, outcome = (ast.literal_eval(line) for line in out.stdout.splitlines()[:2])
    assert counts["interrupted"] > 100, counts  # the timer did interrupt calls
    assert counts["corrupted"] == 0, (counts, outcome)
    assert outcome["duplicated"] == 0 and outcome["stray"] == 0, outcome
    # an acknowledged item is gone only when an interrupted call took it
    assert outcome["missing"] <= counts["taken when interrupted"], (counts, outcome)
