"""A reservation of a live client stays its until it acks or nacks it, its lease runs
out, or its process dies: also when the client gave up on a connection (a call that
timed out against a stopped holder closes it) and when the holder changes after that.

The soak found it: a client reserved, its holder was stopped (SIGSTOP) before the ack
arrived, the ack gave up with ``OutcomeUnknown`` and closed its connection; running
again, the holder refused the expired ack and, seeing the connection end, put the
reservation back at the front, where another process took it within the lease. Real
processes, real SIGSTOP/SIGCONT/SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import faults
import pytest
from test_client_timeouts import BOUND, holder, stopped, timed

import diskqueue as dq

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="waits for SIGSTOP to land by reading /proc")

# Another process: its first dequeue, or "Empty"; then it stays open (as the holder,
# when it is the one that opens the directory first).
TAKER = r"""
import sys, time, diskqueue as dq
q = dq.Queue(sys.argv[1], connect_timeout=10)
print("role", q.role, flush=True)
try:
    print("took", q.dequeue().value, flush=True)
except dq.Empty:
    print("took Empty", flush=True)
time.sleep(600)
"""


def _ack_gives_up(child: faults.Child, q: dq.Queue, item: dq.Item) -> None:
    """The holder stops before the ack reaches it: the ack gives up, its connection is
    closed, and the holder, running again, refuses the expired ack and sees the
    connection end."""
    with stopped(child):
        exc, _ = timed(q.ack, item)
        assert isinstance(exc, dq.OutcomeUnknown), exc
    time.sleep(0.3)  # the holder reads the ack and the end of the connection


def _take_elsewhere(path: str) -> tuple[str, str]:
    """What another process gets from the directory: its role and its dequeue."""
    other = faults.Child(TAKER, path)
    try:
        role, took = other.wait_lines(2, timeout=30)
    finally:
        other.kill()
    return role, took


def test_a_reservation_stays_its_clients_when_the_client_gave_up_on_a_call(tmp_path):
    path = str(tmp_path / "q")
    with holder(path) as child, dq.Queue(path, connect_timeout=BOUND) as q:
        assert q.role == "client"
        q.enqueue_many(["x", "y"])
        item = q.reserve(lease=60)
        assert item.value == "x"
        _ack_gives_up(child, q, item)
        assert _take_elsewhere(path) == ("role client", "took y")
        assert q.in_flight() == 1
        q.ack(item)  # still this process's
        assert q.in_flight() == 0 and len(q) == 0


def test_a_reservation_kept_so_survives_a_handover(tmp_path):
    path = str(tmp_path / "q")
    with holder(path) as child, dq.Queue(path, connect_timeout=BOUND) as q:
        q.enqueue_many(["x", "y"])
        item = q.reserve(lease=60)
        _ack_gives_up(child, q, item)
        os.kill(child.proc.pid, signal.SIGKILL)
        child.proc.wait()
        nxt = faults.Child(TAKER, path)  # the next holder, and another taker
        try:
            assert nxt.wait_lines(2, timeout=30) == ["role owner", "took y"]
            q.ack(item)  # on the next holder: still this process's
            assert q.in_flight() == 0 and len(q) == 0
        finally:
            nxt.kill()


# A client in its own process: reserves, then acks once the file "go" appears.
RESERVER = r"""
import os, sys, time, diskqueue as dq
q = dq.Queue(sys.argv[1], connect_timeout=float(sys.argv[3]))
item = q.reserve(lease=60)
print("reserved", item.value, flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
try:
    q.ack(item)
    print("acked", flush=True)
except dq.OutcomeUnknown:
    print("gave up", flush=True)
time.sleep(600)
"""


def test_a_reservation_kept_so_goes_back_once_its_client_died(tmp_path):
    path, go = str(tmp_path / "q"), str(tmp_path / "go")
    with holder(path) as child:
        with dq.Queue(path, connect_timeout=BOUND) as q:
            q.enqueue_many(["x", "y", "z"])
        reserver = faults.Child(RESERVER, path, go, str(BOUND))
        try:
            assert reserver.wait_lines(1, timeout=30) == ["reserved x"]
            with stopped(child):
                open(go, "w").close()
                assert reserver.wait_lines(2, timeout=30)[1] == "gave up"
            time.sleep(0.3)
            assert _take_elsewhere(path) == ("role client", "took y")  # kept: it lives
        finally:
            reserver.kill()
        with dq.Queue(path, connect_timeout=BOUND) as q:
            deadline = time.monotonic() + 10  # the holder looks at its clients each second
            while q.in_flight() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert q.dequeue().value == "x"
