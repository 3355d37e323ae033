"""Whether a client process still runs, asked while /proc cannot be read.

A holder keeps what live client processes hold and returns what dead ones held (see
``diskqueue.engine.holders``). Reading a process's start time needs a file descriptor:
a holder out of descriptors took every live client for dead, so their reservations and
takes went back to the front while they still had them, and their notes of what they
handed out were deleted.
"""

from __future__ import annotations

import os

from faults import run_py

from diskqueue.engine import holders

OUT_OF_DESCRIPTORS = """
import os, resource, sys
from diskqueue.engine import holders
parent = (int(sys.argv[1]), int(sys.argv[2]))
assert holders.alive(parent)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
spent = []
try:
    while True:
        spent.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
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
