"""An open is one call: when its holder goes while it answers the open's first request,
the search for the next holder ends where the open does, connect_timeout after it
began (the soak's opens of 3.9 and 5.2 s with connect_timeout 2 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from faults import REPO_ROOT, child_env
from test_one_call_bound import CLIENT, HOLDER

# The holder (HOLDER) dies before it answers a client's first request (the handle's
# check of what the directory holds). The opener is the forked child of
# test_one_call_bound, which cannot own a directory, so once the holder is gone it can
# only wait for another process to take over; here it opens instead of calling.
OPENER = CLIENT.replace("""q = dq.Queue(sys.argv[1], connect_timeout=2)
        q.enqueue("first")
        print("connected", flush=True)
        sys.stdin.readline()  # the test killed the owner
""", """print("opening", flush=True)
""").replace('q.enqueue("second")', "dq.Queue(sys.argv[1], connect_timeout=2)")
assert "opening" in OPENER and "second" not in OPENER


def _start(code, *args, env=None):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            env=child_env(env), stdout=subprocess.PIPE, cwd=REPO_ROOT,
                            text=True)


@pytest.mark.timeout(90)
def test_an_open_whose_holder_goes_mid_answer_gives_up_connect_timeout_after_it_began(
        tmp_path):
    path = tmp_path / "q"
    holder = _start(HOLDER, path, env={"DISKQUEUE_TEST_KILL_BEFORE_REPLY": "ensure_kind"})
    opener = None
    try:
        assert holder.stdout.readline() == "ready\n"
        os.kill(holder.pid, signal.SIGSTOP)  # the opener connects, and waits for it
        opener = _start(OPENER, path, tmp_path / "scratch")
        assert opener.stdout.readline() == "opening\n"
        time.sleep(1.5)
        os.kill(holder.pid, signal.SIGCONT)  # it reads the request, and dies
        took, outcome = opener.stdout.readline().split()
        assert opener.wait(30) == 0
        assert holder.wait(30) == -signal.SIGKILL
        # nobody can take over: Locked, connect_timeout (2 s) after the open began
        assert outcome == "Locked"
        assert float(took) <= 2 + 0.9, took
    finally:
        for proc in (holder, opener):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait()
