"""A client's "got it" that its holder cannot write (the disk filled between the take
and the confirmation) must not leave the taken item reserved for ever, nor bring it
back: the holder confirms it again once it can write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from faults import REPO_ROOT, child_env

import diskqueue as dq

HOLDER = """
import os, resource, signal, sys, time, diskqueue as dq
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = sys.argv[1]

def full(*_):  # no file may grow: the next LevelDB write fails
    logs = [os.path.join(path, n) for n in os.listdir(path) if n.endswith(".log")]
    size = max(os.path.getsize(p) for p in logs)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

def room(*_):
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)

signal.signal(signal.SIGUSR1, full)
signal.signal(signal.SIGUSR2, room)
q = dq.Queue(path)
q.enqueue("a")
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.mark.timeout(60)
def test_a_confirmation_the_full_disk_refused_is_written_once_there_is_room(tmp_path):
    path = tmp_path / "q"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(path)],
                              env=child_env(), stdout=subprocess.PIPE, cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline() == b"ready\n"
        with dq.Queue(path) as q:
            assert q.role == "client"
            engine, ns = q._engine, q._ns

            def fill_the_disk(_datas):  # runs before the client says "got it"
                os.kill(holder.pid, signal.SIGUSR1)
                time.sleep(0.3)

            taken = engine.take(ns, 1, check=fill_the_disk)
            assert len(taken) == 1
            time.sleep(0.5)  # the holder read "got it" and could not write it
            os.kill(holder.pid, signal.SIGUSR2)
            time.sleep(0.3)
            for _ in range(50):  # the first calls may still meet the full disk
                try:
                    engine.length(ns)
                    break
                except dq.DiskQueueError:
                    time.sleep(0.1)
            assert engine.length(ns) == 0
            assert engine.in_flight(ns) == 0  # not left reserved for this process
    finally:
        holder.kill()
        holder.wait()
    with dq.Queue(path) as q:
        assert len(q) == 0  # and it does not come back
