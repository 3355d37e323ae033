"""Pre-fork: the holder forks a worker, then is SIGKILLed (issue 9, item 8).

The worker inherited the listening socket and the server ends of the holder's clients'
connections. It must let go of them at once (else the worker and the clients wait on
sockets nobody serves): a new process takes over and everyone proceeds. Real fork,
real SIGKILL.
"""

from __future__ import annotations

import os
import signal
import time

import faults
import pytest
from test_sharing import start_holder

import diskqueue as dq

HOLDER_THAT_FORKS = r"""
import os, sys, time, diskqueue as dq
path, go, worker_log = sys.argv[1], sys.argv[2], sys.argv[3]
q = dq.Queue(path, connect_timeout=3)
print("role", q.role, flush=True)
while q.role != "owner":  # a client until the test kills the holder: then it takes over
    len(q)
    time.sleep(0.02)
print("holding", flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
pid = os.fork()
if pid == 0:  # the worker: keeps using the inherited handle, as a client
    fd = os.open(worker_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the test reads the holder's stdout; the worker must not hold it
    os.dup2(devnull, 2)
    i = 0
    while True:
        try:
            q.enqueue(f"w-{i}")
        except dq.DiskQueueError as exc:
            os.write(fd, f"error {type(exc).__name__}\n".encode())
            time.sleep(0.05)
            continue
        os.write(fd, f"E w-{i} {q.role}\n".encode())
        i += 1
        time.sleep(0.02)
os.write(1, f"forked {pid}\n".encode())  # one write: the child writes to this pipe too
time.sleep(600)
"""

CLIENT = r"""
import os, sys, time, diskqueue as dq
q = dq.Queue(sys.argv[1], connect_timeout=3)
print("ready", q.role, flush=True)
i = 0
while True:
    try:
        q.enqueue(f"c-{i}")
    except dq.DiskQueueError as exc:
        print("error", type(exc).__name__, flush=True)
        time.sleep(0.05)
        continue
    print(f"E c-{i} {q.role}", flush=True)
    i += 1
    time.sleep(0.02)
"""


def _worker_lines(path: str) -> list[str]:
    try:
        with open(path) as fh:
            return [line for line in fh.read().split("\n")[:-1]]
    except FileNotFoundError:
        return []


def _wait_for(what, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("came_to_hold", ["opened", "took over"])
def test_a_forked_worker_and_the_clients_carry_on_after_the_holder_is_killed(tmp_path,
                                                                           came_to_hold):
    """The holder opened the directory, or took it over from a holder that died: either
    way, the worker it forks lets go of the sockets it serves on."""
    path, go, worker_log = str(tmp_path / "q"), str(tmp_path / "go"), str(tmp_path / "w.log")
    first = start_holder(path) if came_to_hold == "took over" else None
    holder = faults.Child(HOLDER_THAT_FORKS, path, go, worker_log)
    client = None
    worker_pid = None
    try:
        if first is not None:
            assert holder.wait_lines(1, timeout=30) == ["role client"]
            first.kill()
        assert holder.wait_lines(2, timeout=30)[1] == "holding"
        client = faults.Child(CLIENT, path)
        assert client.wait_lines(1, timeout=30)[0] == "ready client"  # connected before the fork
        open(go, "w").close()
        worker_pid = int(holder.wait_lines(3, timeout=30)[2].split()[1])
        assert _wait_for(lambda: len(_worker_lines(worker_log)) >= 3, 30), "worker not served"
        holder.kill()
        killed = time.monotonic()
        worker_before = len(_worker_lines(worker_log))
        client_before = len(client.lines)
        # Everyone proceeds, well within connect_timeout (3 s): nobody waits on a dead socket.
        assert _wait_for(lambda: len(_worker_lines(worker_log)) >= worker_before + 10
                         and len(client.lines) >= client_before + 10, 20), (
            f"stuck after the kill: worker {_worker_lines(worker_log)[worker_before:][:5]}, "
            f"client {client.lines[client_before:][:5]}")
        took = time.monotonic() - killed
        assert took < 3, f"took {took:.1f} s to carry on"
        errors = [line for line in _worker_lines(worker_log) + client.lines
                  if line.startswith("error")]
        assert not errors, errors
        # the client took the directory over; the worker (which cannot: LevelDB in its
        # memory still holds the parent's lock) is its client
        assert client.lines[-1].endswith(" owner")
        assert _worker_lines(worker_log)[-1].endswith(" client")
    finally:
        if worker_pid is not None:
            try:
                os.kill(worker_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        holder.kill()
        if client is not None:
            client.kill()
    acknowledged = {line.split()[1] for line in _worker_lines(worker_log) + client.lines
                    if line.startswith("E ")}
    time.sleep(0.2)  # the worker's kill lands (it is not our child: nothing to wait for)
    with dq.Queue(path) as q:
        stored = [item.value for item in q]
    assert acknowledged <= set(stored), "an acknowledged enqueue was lost"


FORKING_CLIENT = r"""
import os, sys, threading, time, diskqueue as dq
q = dq.Queue(sys.argv[1])
assert q.role == "client"

def wait_for_an_item():
    try:
        q.dequeue(block=True, timeout=60)
        os.write(1, b"got one\n")
    except dq.DiskQueueError:
        pass

threading.Thread(target=wait_for_an_item, daemon=True).start()
time.sleep(0.5)  # that thread is now in its call, on a connection of its own
pid = os.fork()
if pid == 0:  # the child inherits the connection the thread was using
    n = len(q)  # served over a connection of its own
    os.write(1, f"child {q.role} {n}\n".encode())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    time.sleep(600)
    os._exit(0)
os.write(1, f"forked {pid}\n".encode())  # one write: the child writes to this pipe too
time.sleep(600)
"""


def test_a_client_killed_after_forking_in_a_call_takes_nothing(tmp_path):
    """The child closes its copy of the parent's busy connection: when the parent dies,
    the holder sees that connection end, and the parent's blocking take ends with it."""
    path = str(tmp_path / "q")
    with dq.Queue(path) as q:
        parent = faults.Child(FORKING_CLIENT, path)
        child_pid = None
        try:
            lines = parent.wait_lines(2, timeout=30)
            assert "child client 0" in lines, lines
            child_pid = int(next(line for line in lines if line.startswith("forked")).split()[1])
            parent.kill()
            time.sleep(0.6)  # the holder checks a waiting client every 0.2 s
            q.enqueue("x")
            time.sleep(0.3)
            assert [item.value for item in q] == ["x"]
            assert q.in_flight() == 0
            assert "got one" not in parent.lines
        finally:
            if child_pid is not None:
                os.kill(child_pid, signal.SIGKILL)
            parent.kill()
