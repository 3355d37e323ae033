"""An open that waits for its holder's socket, then meets a holder that does not answer,
gives up connect_timeout after it began, not connect_timeout after it connected (the
soak's opens of 3.3 to 3.9 s with connect_timeout 2 s)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from faults import Child

from diskqueue.sharing.protocol import SOCKET_NAME

HOLDER = """
import sys, time, diskqueue as dq
q = dq.Queue(sys.argv[1])
print("ready", flush=True)
time.sleep(120)
"""

OPENER = """
import sys, time, diskqueue as dq
started = time.monotonic()
print(f"start {started}", flush=True)
try:
    dq.Queue(sys.argv[1], connect_timeout=2)
    outcome = "served"
except dq.Locked:
    outcome = "Locked"
print(f"{time.monotonic() - started:.3f} {outcome}", flush=True)
"""


def _wait_for(path: str, deadline: float) -> float:
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "the holder did not make its socket again"
        time.sleep(0.001)
    return time.monotonic()


@pytest.mark.timeout(120)
def test_an_open_that_waited_for_the_socket_gives_up_connect_timeout_after_it_began(
        tmp_path):
    path = str(tmp_path / "q")
    sock = os.path.join(path, SOCKET_NAME)
    holder = Child(HOLDER, path)
    try:
        assert holder.wait_lines(1) == ["ready"]
        for _ in range(10):
            # The holder makes its socket again once a second: after it did, remove it
            # once more and start the opener, so the opener waits most of a second for it.
            os.remove(sock)
            _wait_for(sock, time.monotonic() + 5)
            os.remove(sock)
            opener = Child(OPENER, path)
            try:
                began = float(opener.wait_lines(1)[0].split()[1])
                back = _wait_for(sock, time.monotonic() + 5)
                os.kill(holder.proc.pid, signal.SIGSTOP)  # it listens, and answers nothing
                code, lines = opener.finish(timeout=30)
            finally:
                os.kill(holder.proc.pid, signal.SIGCONT)
                opener.kill()
            assert code == 0, opener.stderr[-2000:]
            took, outcome = lines[-1].split()
            if outcome == "served" or back - began < 0.5:
                continue  # it got in before the holder stopped, or waited too little
            assert outcome == "Locked"
            assert float(took) <= 2 + 0.3, (
                f"gave up {took} s after it began, {back - began:.2f} s of it waiting "
                "for the socket")
            return
        pytest.fail("the opener never waited half a second for the socket and then met "
                    "a stopped holder")
    finally:
        holder.kill()
