"""A take a client put back, then taken by another, stays that other's.

A client puts a take back ("put back": its check refused the items, or it had no room
for its notes on a full disk) and the holder returns it to the front with the attempts
it had before, so when another process then reserves the same item it holds it under
the same (seq, attempts) again. Neither the end of the first client's connection nor
the end of the lease of the reservation put back may return that other process's
reservation (it was handed out again while that process had it). Real holder
process, real clients, real sockets.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import faults
import pytest
from test_sharing import holding

import diskqueue as dq

RESERVER = """
import sys, diskqueue as dq
q = dq.Queue(sys.argv[1])
item = q.reserve(lease=60)
print(item.value, item.attempts, flush=True)
sys.stdin.readline()
q.ack(item)
print("acked", flush=True)
q.close()
"""


def refuse(datas: list[bytes]) -> None:
    raise LookupError(f"refused {len(datas)}")


@contextmanager
def reserving(path: str) -> Iterator[None]:
    """Another process reserves "x" (a 60 s lease) for the block, then acks it."""
    other = subprocess.Popen([sys.executable, "-c", RESERVER, path], env=faults.child_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline().strip() == "x 1"
        yield
        other.stdin.write("\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "acked"  # still its, to the end
        assert other.wait(timeout=30) == 0
    finally:
        faults.end(other)


def assert_held_elsewhere(q: dq.Queue) -> None:
    assert q.in_flight() == 1
    with pytest.raises(dq.Empty):
        got = q.dequeue()
        pytest.fail(f"took {got.value!r}, which another process holds")


@pytest.mark.parametrize("how", ["pop_one", "reserve"])
def test_a_take_put_back_and_taken_by_another_stays_its_when_the_first_client_closes(
        tmp_path, how):
    path = str(tmp_path / "q")
    with holding(path):
        q = dq.Queue(path)
        assert q.role == "client"
        q.enqueue("x")
        eng, ns = q._engine, q._ns
        with pytest.raises(LookupError, match="refused"):
            if how == "pop_one":
                eng.pop_one(ns, None, check=refuse)
            else:
                eng.take(ns, 1, lease=60.0, check=refuse)
        with reserving(path):
            assert q.in_flight() == 1
            q.close()  # its connection ends: what it still holds goes back, no more
            time.sleep(0.3)
            with dq.Queue(path) as again:
                assert_held_elsewhere(again)


def test_a_reservation_put_back_and_taken_by_another_keeps_the_others_lease(tmp_path):
    path = str(tmp_path / "q")
    with holding(path), dq.Queue(path) as q:
        q.enqueue("x")
        eng, ns = q._engine, q._ns
        with pytest.raises(LookupError, match="refused"):
            eng.take(ns, 1, lease=0.5, check=refuse)
        with reserving(path):
            time.sleep(1.0)  # past the lease of the reservation put back
            assert_held_elsewhere(q)
