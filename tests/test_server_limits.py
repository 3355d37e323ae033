"""What clients can make a holder do: replies of any size, bounded memory for requests,
a removed socket file, a graceful close, running out of file descriptors.

A holder in another process, clients in this one or in more processes: real sockets,
real signals, real resource limits.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import faults
import pytest
from test_protocol_fuzz import _holder_stats
from test_sharing import holding

import diskqueue as dq
from diskqueue.sharing import protocol

KB300 = "k" * (300 * 1024)


@pytest.mark.timeout(240)
def test_replies_over_64_mib_arrive(tmp_path):
    """list(q) of 300 KB items (a page is 256 of them), dequeue_many(260), peek() of a
    65 MB item: each reply is over the old 64 MiB frame limit."""
    path = str(tmp_path / "q")
    with holding(path), dq.Queue(path) as q:
        assert q.role == "client"
        q.enqueue_many([KB300] * 130)
        q.enqueue_many([KB300] * 130)
        started = time.monotonic()
        assert len(list(q)) == 260
        got = q.dequeue_many(260)
        assert len(got) == 260 and got[-1].value == KB300
        q.enqueue("p" * (65 * 1024 * 1024))
        assert len(q.peek().value) == 65 * 1024 * 1024
        assert time.monotonic() - started < 120


def test_headers_announcing_huge_messages_cost_the_holder_no_memory(tmp_path):
    path = str(tmp_path / "q")
    with holding(path) as holder:
        with dq.Queue(path) as q:
            q.enqueue("warm up")
        time.sleep(0.3)
        _, _, rss_before = _holder_stats(holder.proc.pid)
        socks = []
        try:
            for i in range(8):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(os.path.join(path, protocol.SOCKET_NAME))
                # a whole chunk announced, the first of more, and then nothing
                s.sendall(struct.pack(">I", protocol.CHUNK | (0x80000000 if i % 2 else 0)))
                socks.append(s)
            time.sleep(1.0)
            _, _, rss = _holder_stats(holder.proc.pid)
            assert rss - rss_before < 24 * 1024, f"RSS grew from {rss_before} to {rss} KiB"
            with dq.Queue(path) as q:  # and it still serves
                assert q.dequeue().value == "warm up"
        finally:
            for s in socks:
                s.close()


def test_a_removed_socket_file_is_recreated(tmp_path):
    path = str(tmp_path / "q")
    sock_path = os.path.join(path, protocol.SOCKET_NAME)
    with holding(path):
        os.unlink(sock_path)  # a tmp cleaner
        started = time.monotonic()
        while not os.path.exists(sock_path):
            assert time.monotonic() - started < 3, "the holder did not recreate its socket"
            time.sleep(0.02)
        with dq.Queue(path) as q:
            assert q.role == "client"
            q.enqueue("served")
            assert len(q) == 1
        assert time.monotonic() - started < 5


WRITER = r"""
import os, sys, time, diskqueue as dq
path, tag, go = sys.argv[1], sys.argv[2], sys.argv[3]
q = dq.Queue(path)
os.write(1, f"opened {q.role}\n".encode())
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(300):
    q.enqueue(f"{tag}-{i}")
q.close()
os.write(1, b"closed\n")
"""

READER = r"""
import os, sys, diskqueue as dq
q = dq.Queue(sys.argv[1])
os.write(1, b"ready\n")
idle = 0
while idle < 15:  # 3 s without an item: the writers are done
    try:
        value = q.dequeue(block=True, timeout=0.2).value
    except dq.Empty:
        idle += 1
        continue
    idle = 0
    os.write(1, f"D {value}\n".encode())
q.close()
"""


@pytest.mark.parametrize("run", range(4))
def test_a_graceful_handover_delivers_nothing_twice(tmp_path, run):
    """Two writers enqueue and close() (the first holds); a reader dequeues throughout.
    A close must settle the confirmations it can still read."""
    path = str(tmp_path / "q")
    go = str(tmp_path / "go")
    first = faults.Child(WRITER, path, "a", go)
    children = [first]
    try:
        assert first.wait_lines(1)[0] == "opened owner"
        reader = faults.Child(READER, path)
        children.append(reader)
        reader.wait_lines(1)
        second = faults.Child(WRITER, path, "b", go)
        children.append(second)
        second.wait_lines(1)
        open(go, "w").close()
        for writer in (first, second):
            code, lines = writer.finish(timeout=120)
            assert code == 0 and lines[-1] == "closed", writer.stderr[-2000:]
        code, lines = reader.finish(timeout=120)
        assert code == 0, reader.stderr[-2000:]
    finally:
        for child in children:
            child.kill()
    got = [line[2:] for line in lines if line.startswith("D ")]
    twice = sorted({v for v in got if got.count(v) > 1})
    assert not twice, f"delivered twice: {twice}"
    assert sorted(got) == sorted(f"{t}-{i}" for t in "ab" for i in range(300))


def _connect(path: str, within: float = 20) -> socket.socket:
    """A connection to the holder (its backlog full: waiting until it takes one)."""
    deadline = time.monotonic() + within
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(os.path.join(path, protocol.SOCKET_NAME))
            return s
        except BlockingIOError:
            s.close()
            assert time.monotonic() < deadline, "the holder stopped accepting"
            time.sleep(0.005)


HOLDER_1024 = r"""
import resource, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
import diskqueue as dq
q = dq.Queue(sys.argv[1])
print("role", q.role, flush=True)
time.sleep(600)
"""

OPENER = r"""
import sys, diskqueue as dq
try:
    with dq.Queue(sys.argv[1]) as q:
        q.enqueue("late")
        print("served", q.role)
except dq.DiskQueueError as exc:
    print("refused", type(exc).__name__, exc)
"""


@pytest.mark.timeout(240)
def test_out_of_file_descriptors_the_holder_refuses_clearly_and_recovers(tmp_path):
    path = str(tmp_path / "q")
    holder = faults.Child(HOLDER_1024, path)
    socks: list[socket.socket] = []
    try:
        assert holder.wait_lines(1) == ["role owner"]
        for _ in range(1100):
            socks.append(_connect(path))
        _, threads, _ = _holder_stats(holder.proc.pid)
        assert threads < 20, f"{threads} threads for 1,100 connections"
        started = time.monotonic()
        late = faults.run_py(OPENER, path, timeout=60)
        assert late.returncode == 0, late.stderr[-2000:]
        assert late.stdout.startswith(("served client", "refused DiskQueueError")), late.stdout
        if late.stdout.startswith("refused"):
            assert "file descriptors" in late.stdout
        assert time.monotonic() - started < 30
        for s in socks[:200]:
            s.close()
        del socks[:200]
        time.sleep(0.5)
        again = faults.run_py(OPENER, path, timeout=60)
        assert again.stdout.startswith("served client"), (again.stdout, again.stderr[-2000:])
        assert holder.proc.poll() is None
    finally:
        for s in socks:
            s.close()
        holder.kill()


MANY_WAITERS = r"""
import sys, threading, time, diskqueue as dq
q = dq.Queue(sys.argv[1])
print("ready", flush=True)
done = []
def wait():
    try:
        q.dequeue(block=True, timeout=6)
        done.append("item")
    except dq.Empty:
        done.append("empty")
    except Exception as exc:
        done.append(type(exc).__name__)
threads = [threading.Thread(target=wait) for _ in range(1100)]
started = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join(120)
print(len(done), sorted(set(done)), round(time.monotonic() - started, 1))
"""


@pytest.mark.timeout(300)
def test_a_client_with_1100_threads_in_a_blocking_dequeue_gets_every_one_back(tmp_path):
    path = str(tmp_path / "q")
    with holding(path) as holder:
        waiters = faults.Child(MANY_WAITERS, path)
        try:
            waiters.wait_lines(1)
            most = 0
            while waiters.proc.poll() is None:  # the holder parks the calls: no threads
                most = max(most, _holder_stats(holder.proc.pid)[1])
                time.sleep(0.2)
            code, lines = waiters.finish(timeout=200)
        finally:
            waiters.kill()
        assert code == 0, waiters.stderr[-2000:]
        count, kinds, _ = lines[-1].split(" ", 2)
        assert count == "1100", lines
        assert kinds.startswith("['empty']"), lines
        assert most < 20, f"the holder ran {most} threads for 1,100 waiting calls"
        assert holder.proc.poll() is None
