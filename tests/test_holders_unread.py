"""Whether a client process still runs, asked while /proc cannot be read.

A holder keeps what live client processes hold and returns what dead ones held (see
``diskqueue.engine.holders``). Reading a process's start time needs a file descriptor:
a holder out of descriptors took every live client for dead, so their reservations and
takes went back to the front while they still had them, and their notes of what they
handed out were deleted. Reading a dead client's notes needs one too: a file that could
not be opened was read as "nothing noted", and what the client had handed out came back.
"""

from __future__ import annotations

import json
import os

import pytest
from faults import SPEND_EVERY_DESCRIPTOR, Child, run_py
from test_handed_out import CLIENT, HOLDER, _end

from diskqueue.engine import holders

OUT_OF_DESCRIPTORS = """
import os, resource, sys
from diskqueue.engine import holders
parent = (int(sys.argv[1]), int(sys.argv[2]))
assert holders.alive(parent)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
""" + SPEND_EVERY_DESCRIPTOR + """
print(holders.alive(parent), holders.alive((int(sys.argv[3]), 1)),
      holders.identity(os.getpid()) is not None, flush=True)
"""


def test_a_live_process_is_alive_while_its_start_time_cannot_be_read():
    me = holders.me()
    gone = _a_pid_that_ended()
    done = run_py(OUT_OF_DESCRIPTORS, str(me[0]), str(me[1]), str(gone))
    assert done.returncode == 0, done.stderr
    # alive, and a process that ended is still gone (it needs no descriptor to tell)
    assert done.stdout.split() == ["True", "False", "True"]


def test_a_reused_pid_is_not_the_process_named():
    me = holders.me()
    assert holders.alive(me)
    assert not holders.alive((me[0], me[1] + 1))


def _a_pid_that_ended() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# The new holder of test_handed_out's handover runs out of descriptors for the looks
# that settle what it inherited for the dead client (about one a second), then gets
# them back.
HOLDER_OUT_OF_DESCRIPTORS = """
import json, os, sys, time, diskqueue as dq
q = dq.Queue(sys.argv[1], codec="json")
assert q.role == "owner"
""" + SPEND_EVERY_DESCRIPTOR + """
time.sleep(2.5)
for fd in spent:
    os.close(fd)
end = time.monotonic() + 10
while q.in_flight() and time.monotonic() < end:
    time.sleep(0.05)
print(json.dumps([q.in_flight(), [item.value for item in q]]), flush=True)
q.close()
"""


@pytest.mark.timeout(60)
def test_a_holder_out_of_descriptors_does_not_give_back_what_a_dead_client_handed_out(
        tmp_path):
    """The dead client's notes could not be opened: read as "nothing noted", so its
    handed-out take went back to the front and was given out again."""
    path = str(tmp_path / "q")
    holder = Child(HOLDER, path, "Queue")
    client = None
    try:
        holder.wait_lines(1)
        client = Child(CLIENT, path, "Queue")
        got = client.wait_lines(1)[0].split(" ", 2)[2]
        holder.kill()  # stopped: the client's "got it" is still unread
        client.kill()  # before it could settle with another holder
        done = run_py(HOLDER_OUT_OF_DESCRIPTORS, path)
        assert done.returncode == 0, done.stderr
        in_flight, left = json.loads(done.stdout)
        assert in_flight == 0
        assert got not in left
        assert sorted(left + [got]) == ["first", "second", "third"]
    finally:
        _end(holder, client)
