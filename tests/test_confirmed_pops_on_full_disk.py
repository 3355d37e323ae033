"""A client's "got it" for a Stack pop that its holder cannot write (the disk filled
between the pop and the confirmation) is written once there is room: the popped item's
held record must not stay on disk, where the next holder would push the item back on
top (the chaos soak saw pops come back so after full-disk rounds)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from faults import Child

import diskqueue as dq

HOLDER = """
import os, resource, signal, sys, time, diskqueue as dq
from diskqueue.engine import keys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path, done = sys.argv[1], []

def limit(signum, _frame):  # SIGUSR1: no file may grow (the next write fails); SIGUSR2: room
    sizes = [os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
             if n.endswith(".log")]
    cap = max(sizes) if signum == signal.SIGUSR1 else resource.RLIM_INFINITY
    resource.setrlimit(resource.RLIMIT_FSIZE, (cap, resource.RLIM_INFINITY))

for signum in (signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(signum, limit)
signal.signal(signal.SIGTERM, lambda *_: done.append(1))
s = dq.Stack(path)
s.push("a")
s.push("b")
print("ready", flush=True)
while not done:
    time.sleep(0.05)
print("held", sum(1 for _ in s._engine._store.iter_prefix(keys.HELD)), flush=True)
s.close()
"""


@pytest.mark.parametrize("leaves", [False, True],
                         ids=["client stays", "client leaves while the disk is full"])
@pytest.mark.timeout(60)
def test_a_pop_confirmation_the_full_disk_refused_is_written_once_there_is_room(
        tmp_path, leaves):
    path = str(tmp_path / "s")
    holder = Child(HOLDER, path)
    try:
        holder.wait_lines(1)
        stack = dq.Stack(path)
        assert stack.role == "client"

        def full_before_got_it(_datas: list[bytes]) -> None:
            os.kill(holder.proc.pid, signal.SIGUSR1)
            time.sleep(0.3)

        popped = stack._engine.take(stack._ns, 1, from_tail=True, check=full_before_got_it)
        assert len(popped) == 1
        time.sleep(0.5)  # the holder read "got it" and could not delete the held record
        if leaves:
            stack.close()  # the holder cannot write it then either
            time.sleep(0.3)
        os.kill(holder.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not leaves:  # each call carries the word again; the first may meet the full disk
            try:
                assert len(stack) == 1
                break
            except dq.DiskQueueError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        stack.close()
        time.sleep(1.5)  # the holder tries again at its next check (every second)
        holder.proc.send_signal(signal.SIGTERM)
        code, lines = holder.finish()
        assert (code, lines) == (0, ["ready", "held 0"])  # the confirmation was written
    finally:
        if holder.proc.poll() is None:
            holder.kill()
    with dq.Stack(path) as stack:
        assert [item.value for item in stack] == ["a"]
