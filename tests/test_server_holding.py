"""Every take a client makes is held by the holder until the client confirms it.

A client that asked for an item and then stopped (SIGSTOP, before it read the reply)
while the holder is SIGKILLed must find the item still in the directory after the
takeover: for every structure and every kind of take, batches included. Real
processes, real signals, a real socket.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import faults
import pytest
from test_sharing import holding

import diskqueue as dq
from diskqueue.sharing import protocol, server

BIG = 60 * 1024 * 1024

# The client stops itself right after sending its call, before reading the reply.
STOPPED_CLIENT = r"""
import os, signal, sys, diskqueue as dq
from diskqueue.sharing import protocol
path, kind, call = sys.argv[1:4]
h = getattr(dq, kind)(path)
assert h.role == "client", h.role
read = protocol.FrameReader.read
def stop_then_read(self):
    os.kill(os.getpid(), signal.SIGSTOP)
    return read(self)
protocol.FrameReader.read = stop_then_read
os.write(1, b"calling\n")
got = eval(call)
os.write(1, b"got\n")
"""

# kind, how the items go in (as the client ``h``), the take, what must come out first
CASES = {
    "queue-dequeue": ("Queue", "h.enqueue_many([B, 'after'])", "h.dequeue()",
                      "h.dequeue().value"),
    "queue-batch": ("Queue", "h.enqueue_many([B[:20], B[:21], 'after'])",
                    "h.dequeue_many(2)", "[i.value for i in h.dequeue_many(2)]"),
    "stack-pop": ("Stack", "h.push_many(['below', B])", "h.pop()", "h.pop().value"),
    "stack-batch": ("Stack", "h.push_many(['below', B[:21], B[:20]])", "h.pop_many(2)",
                    "[i.value for i in h.pop_many(2)]"),
    "priority-get": ("PriorityQueue", "h.enqueue_many([(1, B), (5, 'after')])",
                     "h.dequeue()", "h.dequeue().value"),
    "priority-batch": ("PriorityQueue", "h.enqueue_many([(1, B[:20]), (2, B[:21]), (5, 'x')])",
                       "h.dequeue_many(2)", "[i.value for i in h.dequeue_many(2)]"),
    "prefix-dequeue": ("PrefixQueue", "h.enqueue_many('p', [B, 'after'])",
                       "h.dequeue('p')", "h.dequeue('p').value"),
    "prefix-batch": ("PrefixQueue", "h.enqueue_many('p', [B[:20], B[:21], 'x'])",
                     "h.dequeue_many('p', 2)", "[i.value for i in h.dequeue_many('p', 2)]"),
}

EXPECTED = {
    "queue-dequeue": "B", "queue-batch": "[B[:20], B[:21]]", "stack-pop": "B",
    "stack-batch": "[B[:20], B[:21]]", "priority-get": "B",
    "priority-batch": "[B[:20], B[:21]]", "prefix-dequeue": "B",
    "prefix-batch": "[B[:20], B[:21]]",
}


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_take_survives_the_holder_dying_before_the_client_read_it(tmp_path, case):
    kind, fill, take, first = CASES[case]
    path = str(tmp_path / "q")
    scope = {"B": "x" * BIG}
    with holding(path, kind) as holder:
        with getattr(dq, kind)(path) as h:
            assert h.role == "client"
            eval(fill, {**scope, "h": h})
        client = faults.Child(STOPPED_CLIENT, path, kind, take)
        try:
            client.wait_lines(1, timeout=30)
            deadline = time.monotonic() + 30
            while not _stopped(client.proc.pid):
                assert time.monotonic() < deadline, "the client never stopped"
                time.sleep(0.01)
            time.sleep(1.0)  # the holder has taken the item(s) and is sending the reply
            holder.kill()
        finally:
            if client.proc.poll() is None:
                os.kill(client.proc.pid, signal.SIGKILL)
            client.kill()
    with getattr(dq, kind)(path) as h:
        assert h.role == "owner"
        got = eval(first, {**scope, "h": h})
        assert got == eval(EXPECTED[case], scope), "a held take was lost with the holder"


class Raw:
    """A client speaking the wire protocol itself, to say exactly what a client may."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(os.path.join(path, protocol.SOCKET_NAME))
        self.reader = protocol.FrameReader(self.sock)

    def call(self, method: str, *args: object, **kwargs: object) -> list:
        self.sock.sendall(protocol.pack([method, list(args), kwargs]))
        return self.reader.read()

    def say(self, word: str) -> None:
        self.sock.sendall(protocol.pack(word))

    def close(self) -> None:
        self.sock.close()


def test_a_stack_pop_put_back_returns_to_the_top(tmp_path):
    path = str(tmp_path / "q")
    with holding(path, "Stack"), dq.Stack(path) as s:
        s.push_many(["a", "b", "c"])
        raw = Raw(path)
        try:
            ok, (lane, seq, key, data, _), holds = raw.call("pop_one", b"", b"", False, True)
            assert ok == 0 and len(s) == 2 and len(holds) == 1  # the id of its held record
            raw.say(server.PUT_BACK)
            deadline = time.monotonic() + 10
            while len(s) != 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert [i.value for i in s.pop_many(3)] == ["c", "b", "a"]
        finally:
            raw.close()


def test_a_stack_pop_of_a_client_that_left_without_a_word_goes_back_on_top(tmp_path):
    path = str(tmp_path / "q")
    with holding(path, "Stack"), dq.Stack(path) as s:
        s.push_many(["a", "b", "c"])
        raw = Raw(path)
        ok, _, holds = raw.call("take_run", b"", b"", 2, True)
        assert ok == 0 and len(s) == 1 and len(holds) == 2
        raw.close()
        deadline = time.monotonic() + 10
        while len(s) != 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [i.value for i in s.pop_many(3)] == ["c", "b", "a"]


def test_put_back_returns_reservations_and_dequeues_with_their_attempts(tmp_path):
    path = str(tmp_path / "q")
    with holding(path), dq.Queue(path) as q:
        q.enqueue_many(["a", "b"])
        q.nack(q.reserve())  # "a" has been attempted once
        raw = Raw(path)
        try:
            ok, entries = raw.call("take", b"", 2, lane=b"", lease=60.0)
            assert ok == 0 and [e[4] for e in entries] == [2, 1]
            raw.say(server.PUT_BACK)
            ok, entry = raw.call("pop_one", b"", b"")  # a dequeue, held: then put back
            assert ok == 0 and entry[1] == 1  # "a", back at the front
            raw.say(server.PUT_BACK)
            deadline = time.monotonic() + 10
            while q.in_flight() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert q.in_flight() == 0 and len(q) == 2
            got = [q.reserve(), q.reserve()]
            assert [(i.value, i.attempts) for i in got] == [("a", 2), ("b", 1)]
        finally:
            raw.close()


def test_got_it_lets_a_held_take_go(tmp_path):
    path = str(tmp_path / "q")
    with holding(path, "Stack"), dq.Stack(path) as s:
        s.push_many(["a", "b"])
        raw = Raw(path)
        try:
            assert raw.call("pop_one", b"", b"", False, True)[0] == 0
            raw.say(server.RECEIVED)
            assert raw.call("length", b"")[1] == 1  # answered after the word was read
        finally:
            raw.close()
        time.sleep(0.3)
        assert [i.value for i in s.pop_many(5)] == ["a"]



FORKING_HOLDER = r"""
import os, sys, time, diskqueue as dq
path, go = sys.argv[1], sys.argv[2]
q = dq.Queue(path)
os.write(1, f"role {q.role}\n".encode())
while not os.path.exists(go + ".fork"):
    time.sleep(0.005)
pid = os.fork()
if pid == 0:
    q._engine._server.forget_after_fork()  # what the at-fork hook does
    os.write(1, f"child {os.getpid()}\n".encode())
    while not os.path.exists(go):
        time.sleep(0.005)
    q.enqueue("from the child")
    os.write(1, f"child enqueued as {q.role}\n".encode())
    os._exit(0)
time.sleep(600)
"""


def test_a_forked_child_of_the_holder_lets_go_of_its_sockets(tmp_path):
    """The holder forks, then dies: its clients and the child move on at once."""
    path = str(tmp_path / "q")
    go = str(tmp_path / "go")
    holder = faults.Child(FORKING_HOLDER, path, go)
    child_pid = None
    try:
        assert holder.wait_lines(1) == ["role owner"]
        with dq.Queue(path) as q:
            q.enqueue("before")  # this connection exists before the fork
            open(go + ".fork", "w").close()
            child_pid = int(holder.wait_lines(2)[1].split()[1])
            os.kill(holder.proc.pid, signal.SIGKILL)  # the child keeps its output open
            holder.proc.wait()
            started = time.monotonic()
            done: list[str] = []
            caller = threading.Thread(target=lambda: done.append(q.enqueue("after").value))
            caller.start()
            caller.join(15)
            assert done == ["after"], "a client of the dead holder hangs"
            assert time.monotonic() - started < 10
            open(go, "w").close()
            deadline = time.monotonic() + 15
            while len(q) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert sorted(i.value for i in q) == ["after", "before", "from the child"]
    finally:
        if child_pid is not None:
            try:
                os.kill(child_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        holder.kill()
    assert any(line.startswith("child enqueued") for line in holder.lines)
