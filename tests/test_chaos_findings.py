"""What the chaos soak (``benchmarks/chaos.py``) found, each reproduced on its own.

Real processes, real LevelDB, a real full disk (``RLIMIT_FSIZE`` with ``SIGXFSZ``
ignored, so a write past it fails as a full disk does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import diskqueue as dq
from diskqueue.engine.store import read_pid

try:
    from . import faults
except ImportError:
    import faults

STARVED_HOLDER = r"""
import json, resource, signal, sys
import diskqueue as dq

import os, time
path, go = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
q = dq.PriorityQueue(path, codec="raw", connect_timeout=2)
q.enqueue_many([(0, b"item%d" % i) for i in range(5)])
print("ready", flush=True)
# Nothing may grow a file now: the failed write's recovery cannot reopen LevelDB either.
old = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, old[1]))
try:
    q.enqueue(0, b"never")
    print("full: no error", flush=True)
except dq.DiskQueueError as exc:
    print("full", type(exc).__name__, flush=True)
while not os.path.exists(go):
    time.sleep(0.02)
resource.setrlimit(resource.RLIMIT_FSIZE, old)
got = []
for _ in range(6):
    try:
        got.append(q.dequeue().value.decode())
    except dq.Empty:
        break
    except dq.DiskQueueError as exc:
        got.append(type(exc).__name__ + ": " + str(exc)[:120])
        break
print(json.dumps(got), flush=True)
q.close()
"""


@pytest.mark.timeout(60)
def test_a_starved_holder_keeps_the_directory(tmp_path):
    """A holder whose store cannot reopen after a failed write (the disk still full)
    must keep the directory locked: another process that took it meanwhile changed
    what the holder still had in memory, and once the disk had room the holder went on
    from its stale pointers (``Corrupted: item ... is missing``, or an item twice)."""
    path = str(tmp_path / "q")
    go = tmp_path / "go"
    holder = faults.Child(STARVED_HOLDER, path, str(go))
    try:
        holder.wait_lines(2)
        assert holder.lines[1].startswith("full DiskQueueError"), holder.lines
        taken = []
        try:
            other = dq.PriorityQueue(path, codec="raw", connect_timeout=2)
        except dq.DiskQueueError:
            other = None
        if other is not None:
            try:
                taken.append(other.dequeue().value.decode())
            except dq.DiskQueueError:
                pass  # the holder's disk is still full: nothing was taken
            finally:
                other.close()
    finally:
        go.touch()
    lines = holder.wait_lines(3)
    holder.finish()
    got = json.loads(lines[2])
    assert not [g for g in got if "Corrupted" in g], got
    assert not set(got) & set(taken), (got, taken)
    assert sorted(got + taken) == [f"item{i}" for i in range(5)], (got, taken)


FILL_AND_DIE = r"""
import os, sys
import diskqueue as dq
q = dq.Queue(sys.argv[1], codec="raw")
q.enqueue_many([os.urandom(1000) for _ in range(3500)])  # a log LevelDB must recover
print("full", flush=True)
os.kill(os.getpid(), 9)
"""

OPENER = r"""
import sys
import diskqueue as dq
q = dq.Queue(sys.argv[1], codec="raw")
print("open", flush=True)
sys.stdin.read()
"""


def _lock_holders(name: str) -> set[int]:
    """The pids holding an fcntl lock on a file, from /proc/locks."""
    st = os.stat(name)
    tail = f":{st.st_ino}"
    pids = set()
    with open("/proc/locks") as fh:
        for line in fh:
            parts = line.split()
            if "->" in parts:
                continue
            if len(parts) >= 6 and parts[5].endswith(tail):
                pids.add(int(parts[4]))
    return pids


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="reads /proc/locks")
@pytest.mark.timeout(60)
def test_the_pid_file_names_the_owner_while_leveldb_recovers(tmp_path):
    """``diskqueue.pid`` was written after LevelDB's open and recovery, so for as long as
    the recovery ran the file named the previous owner, dead: what a user (or the soak)
    reads to find the owner named the wrong process."""
    path = str(tmp_path / "q")
    dead = faults.Child(FILL_AND_DIE, path)
    dead.wait_lines(1)
    dead.finish()
    assert open(os.path.join(path, "diskqueue.pid")).read().strip() == str(dead.proc.pid)
    opener = subprocess.Popen([sys.executable, "-c", OPENER, path], env=faults.child_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              cwd=faults.REPO_ROOT)
    lock = os.path.join(path, "LOCK")
    wrong = []
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and opener.poll() is None:
            holders = _lock_holders(lock)
            named = read_pid(path)
            if opener.pid in holders:
                if named != opener.pid:
                    wrong.append(named)
                else:
                    break
        assert opener.stdout is not None
        assert opener.stdout.readline().strip() == b"open"
    finally:
        opener.kill()
        opener.wait()
    assert not wrong, f"LevelDB's LOCK held by {opener.pid} while the pid file named {wrong[:3]}"


FORKED_AFTER_LEVELDB = r"""
import os, sys, time
import diskqueue as dq

path, other = sys.argv[1], sys.argv[2]
q = dq.Queue(path, codec="raw")
for _ in range(60):  # past the write buffer: a flush ran
    q.enqueue(b"x" * 100_000)
q.close()  # in LevelDB's background thread, which fork() does not copy
pid = os.fork()
if pid == 0:
    try:
        child = dq.Queue(other, codec="raw", connect_timeout=1)
        for _ in range(3):
            child.enqueue_many([b"y" * 100_000 for _ in range(30)])  # flushes needed
        role = child.role
        child.close()
        os.write(1, ("child " + role + "\n").encode())
    except dq.DiskQueueError as exc:
        os.write(1, ("child " + type(exc).__name__ + ": " + str(exc) + "\n").encode())
    os._exit(0)
print("forked", pid, flush=True)
time.sleep(60)
"""


@pytest.mark.timeout(60)
def test_a_child_forked_after_leveldb_ran_does_not_hang(tmp_path):
    """A child forked from a process that had used LevelDB opened a directory nobody
    held and became its owner; LevelDB's background thread, not copied by fork(), never
    ran its flushes: the child's writes stopped for ever (in the soak: a forked worker
    that took a directory over, its close() hung and every other process got Locked).
    The child now stays out of owning and says why, at once, instead of hanging."""
    parent = faults.Child(FORKED_AFTER_LEVELDB, str(tmp_path / "a"), str(tmp_path / "b"))
    child_pid = None
    try:
        child_pid = int(parent.wait_lines(1)[0].split()[1])
        lines = parent.wait_lines(2, timeout=20)
    finally:
        if child_pid is not None:
            try:
                os.kill(child_pid, 9)
            except ProcessLookupError:
                pass
        parent.kill()
    assert lines[1].startswith("child Locked: "), lines
    assert "forked" in lines[1] and "fork()" in lines[1], lines


CHILD_OF_AN_OWNER = r"""
import os, sys, time
import diskqueue as dq

path, closed = sys.argv[1], sys.argv[2]
q = dq.Queue(path, codec="raw")
q.enqueue(b"x")
pid = os.fork()
if pid == 0:
    while not os.path.exists(closed):
        time.sleep(0.01)
    try:
        dq.Queue(path, codec="raw", connect_timeout=1)
        os.write(1, b"child opened\n")
    except dq.DiskQueueError as exc:
        os.write(1, f"child {os.getpid()} {type(exc).__name__}: {exc}\n".encode())
    os._exit(0)
q.close()
open(closed, "w").close()
os.waitpid(pid, 0)
print("done", flush=True)
"""


@pytest.mark.timeout(60)
def test_a_child_that_cannot_take_over_does_not_name_itself(tmp_path):
    """A child of the directory's owner finds the directory free once the owner closed,
    but LevelDB in the child still holds its lock for the parent: its ``Locked`` named
    the child itself as the holder (it had just written its pid in the pid file)."""
    proc = subprocess.run([sys.executable, "-c", CHILD_OF_AN_OWNER, str(tmp_path / "q"),
                           str(tmp_path / "closed")], env=faults.child_env(),
                          capture_output=True, text=True, timeout=50, cwd=faults.REPO_ROOT)
    line = proc.stdout.splitlines()[0]
    assert line.startswith("child ") and "Locked" in line, proc.stdout + proc.stderr
    child = line.split()[1]
    assert f"process {child}" not in line, line


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="reads /proc/locks")
def test_a_repair_of_a_directory_this_process_owns_keeps_it_locked(tmp_path):
    """An fcntl lock belongs to the process, and closing any descriptor of its file lets
    it go: a repair in the owning process must not open and close the lock file."""
    from diskqueue.engine.repair import repair

    path = str(tmp_path / "q")
    q = dq.Queue(path)
    try:
        q.enqueue(1)
        with pytest.raises(dq.Locked):
            repair(path)
        assert os.getpid() in _lock_holders(os.path.join(path, "diskqueue.lock"))
        assert q.dequeue().value == 1
    finally:
        q.close()
