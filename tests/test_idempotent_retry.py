"""A client's push (or ack, or nack) that the holder wrote, but whose reply the
holder's death lost, is sent again after the takeover and must land once (issue:
nothing stored twice; an acknowledged ack is not reported as refused).

The holder runs with the test hook ``DISKQUEUE_TEST_KILL_BEFORE_REPLY=<method>``: it
SIGKILLs itself after running a client's call of that method, before replying.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from faults import REPO_ROOT, child_env

import diskqueue as dq
from diskqueue.engine.api import RECEIPTS
from diskqueue.sharing import protocol, receipts

HOLDER = """
import sys, time, diskqueue as dq
handle = getattr(dq, sys.argv[2])(sys.argv[1])
print("ready", flush=True)
time.sleep(120)
"""


def start_holder(path, kind, kill_before_reply=None):
    extra = {"DISKQUEUE_TEST_KILL_BEFORE_REPLY": kill_before_reply} if kill_before_reply else {}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(path), kind],
                            env=child_env(extra), stdout=subprocess.PIPE, cwd=REPO_ROOT)
    assert proc.stdout.readline() == b"ready\n"
    return proc


CASES = [
    ("Queue", "push_one", lambda h: h.enqueue("x"), ["x"], {}),
    ("Queue", "push_run", lambda h: h.enqueue_many(["a", "b", "c"]), ["a", "b", "c"], {}),
    ("PriorityQueue", "push", lambda h: h.enqueue_many([(1, "p"), (2, "q")]), ["p", "q"],
     {}),
    ("Queue", "push_durable", lambda h: h.enqueue_many(["s", "t"]), ["s", "t"],
     {"sync": True}),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("kind", "method", "call", "values", "options"), CASES,
                         ids=[c[1] for c in CASES])
def test_a_push_whose_reply_died_with_its_holder_lands_once(tmp_path, kind, method,
                                                            call, values, options):
    path = tmp_path / "q"
    holder = start_holder(path, kind, kill_before_reply=method)
    try:
        with getattr(dq, kind)(path, connect_timeout=10, **options) as handle:
            assert handle.role == "client"
            call(handle)  # written, then the holder died; sent again: answered once
            assert holder.wait(10) == -signal.SIGKILL
            assert handle.role == "owner"
            got = [item.value for item in handle]
            assert sorted(got) == sorted(values), got
            assert len(handle) == len(values)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


def _ack_each(q, item):
    """The task worker's ack: several reservations' acks, each with its records."""
    assert q._engine.ack_each([(q._ns, b"", item.id, None, ())]) == [True]


ACKS = [
    ("ack", lambda q, item: q.ack(item), ["b"]),
    ("nack", lambda q, item: q.nack(item), ["a", "b"]),
    ("nack", lambda q, item: q.nack(item, front=False), ["b", "a"]),
    ("ack_each", _ack_each, ["b"]),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("method", "call", "left"), ACKS,
                         ids=["ack", "nack", "nack-to-back", "ack_each"])
def test_an_ack_whose_reply_died_with_its_holder_is_answered_once(tmp_path, method, call,
                                                                  left):
    # Before: sent again to the next holder, the ack (or nack) that had landed was
    # refused as NotReserved, its item already gone (or back), and the caller was told
    # its work was not acknowledged (a full-disk stress counted such an item as lost).
    path = tmp_path / "q"
    with dq.Queue(path) as q:
        q.enqueue_many(["a", "b"])
    holder = start_holder(path, "Queue", kill_before_reply=method)
    try:
        with dq.Queue(path, connect_timeout=10) as q:
            assert q.role == "client"
            item = q.reserve(lease=60)
            assert item.value == "a"
            call(q, item)  # landed, then the holder died; sent again: answered
            assert holder.wait(10) == -signal.SIGKILL
            assert q.role == "owner"
            assert q.in_flight() == 0
            assert [got.value for got in q] == left
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


def _request(sock, reader, frame):
    sock.sendall(protocol.pack(frame))
    return reader.read()


@pytest.mark.timeout(60)
def test_a_holder_answers_a_repeated_push_from_its_receipt(tmp_path):
    """The holder's side: the same numbered push sent twice (the second time marked as
    sent before) stores one item, and both replies are the same."""
    path = tmp_path / "q"
    holder = start_holder(path, "Queue")
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path / protocol.SOCKET_NAME))
        reader = protocol.FrameReader(sock)
        push = ["push_one", [b"", b"", b"\x80\x04\x95"], {}, time.time() + 10]
        first = _request(sock, reader, [*push, [3, 1234, False]])
        again = _request(sock, reader, [*push, [3, 1234, True]])
        other = _request(sock, reader, [*push, [3, 1235, True]])  # never landed: pushed
        assert first[0] == again[0] == other[0] == 0
        assert again[1] == first[1]
        assert other[1] != first[1]
        assert _request(sock, reader, ["length", [b"", None], {}])[1] == 2
        sock.close()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.timeout(60)
def test_the_receipts_of_ended_clients_are_deleted(tmp_path):
    path = tmp_path / "q"
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, diskqueue as dq
            with dq.Queue(sys.argv[1]) as q:
                q.enqueue_many(range(3))
        """), str(path)], env=child_env(), cwd=REPO_ROOT, timeout=30)
    assert child.returncode == 0
    holder = start_holder(path, "Queue")  # a client of it pushes: one receipt each
    try:
        for _ in range(2):
            rc = subprocess.run(
                [sys.executable, "-c", "import sys, diskqueue as dq\n"
                 "with dq.Queue(sys.argv[1]) as q:\n    q.enqueue(1)\n", str(path)],
                env=child_env(), cwd=REPO_ROOT, timeout=30).returncode
            assert rc == 0
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait()
    with dq.Queue(path) as q:
        assert len(q) == 5
        engine = q._engine
        assert len(engine.scan_records(RECEIPTS)) == 2  # the clients ended: garbage
        assert receipts.sweep(engine) == 2
        assert engine.scan_records(RECEIPTS) == []
    assert os.path.isdir(path)


SWEEPING_HOLDER = """
import sys, time, diskqueue as dq
from diskqueue.sharing import receipts
receipts.SWEEP_EVERY = 0.2  # this test's holder looks often
q = dq.Queue(sys.argv[1])
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(60)
def test_a_holder_deletes_the_receipts_of_clients_that_ended(tmp_path):
    path = tmp_path / "q"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SWEEPING_HOLDER),
                               str(path)], env=child_env(), stdout=subprocess.PIPE,
                              cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline() == b"ready\n"
        rc = subprocess.run(
            [sys.executable, "-c", "import sys, diskqueue as dq\n"
             "with dq.Queue(sys.argv[1]) as q:\n    q.enqueue(1)\n", str(path)],
            env=child_env(), cwd=REPO_ROOT, timeout=30).returncode
        assert rc == 0
        time.sleep(2.5)  # the holder checks every second, and sweeps then
    finally:
        holder.kill()
        holder.wait()
    with dq.Queue(path) as q:
        assert len(q) == 1
        assert q._engine.scan_records(RECEIPTS) == []
