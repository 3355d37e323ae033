"""Many processes, one directory: the holder serves the others over a Unix socket.

Real processes, real SIGKILL, a real socket: nothing here is simulated.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import stat
import struct
import threading
import time
from collections.abc import Iterator

import faults

import diskqueue as dq
from diskqueue.sharing import protocol

HOLDER = r"""
import sys, time, diskqueue as dq
q = getattr(dq, sys.argv[2] if len(sys.argv) > 2 else "Queue")(sys.argv[1])
print("role", q.role, flush=True)
time.sleep(600)
"""

PRODUCER = r"""
import os, sys, diskqueue as dq
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
q = dq.Queue(path)
for i in range(n):
    q.enqueue(f"{tag}-{i}")
    os.write(1, f"E {tag}-{i}\n".encode())
os.write(1, b"done\n")
"""

CONSUMER = r"""
import os, random, sys, time, diskqueue as dq
path = sys.argv[1]
q = dq.Queue(path)
os.write(1, b"ready\n")
while True:
    try:
        item = q.reserve(lease=60, block=True, timeout=0.5)
    except dq.Empty:
        continue
    os.write(1, f"R {item.value}\n".encode())
    time.sleep(random.random() * 0.004)  # "work": a kill here must not lose the item
    os.write(1, f"K {item.value}\n".encode())  # from here the ack may land at any moment
    try:
        q.ack(item)
    except dq.NotReserved:  # the holder died: the ack landed, or the item went back
        os.write(1, f"N {item.value}\n".encode())
        continue
    os.write(1, f"A {item.value}\n".encode())
"""


def values(lines: list[str], tag: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in lines if line.startswith(tag + " ")]


def start_holder(path: str, kind: str = "Queue") -> faults.Child:
    holder = faults.Child(HOLDER, path, kind)
    assert holder.wait_lines(1, timeout=30) == ["role owner"]
    return holder


@contextlib.contextmanager
def holding(path: str, kind: str = "Queue") -> Iterator[faults.Child]:
    """Another process holds ``path`` (as a ``kind``) for the length of the block."""
    holder = start_holder(path, kind)
    try:
        yield holder
    finally:
        holder.kill()


def test_a_second_process_is_served_by_the_holder(tmp_path):
    path = str(tmp_path / "q")
    with holding(path):
        with dq.Queue(path) as q:
            assert q.role == "client"
            q.enqueue("from the client")
            assert q.enqueue_many([1, 2, 3])[-1].id == 4
            assert [i.value for i in q] == ["from the client", 1, 2, 3]
            item = q.reserve()
            assert q.in_flight() == 1
            q.nack(item)
            assert q.dequeue().value == "from the client"
            assert len(q) == 3


def test_four_producers_and_a_consumer_get_every_item_exactly_once(tmp_path):
    path = str(tmp_path / "q")
    consumer = faults.Child(CONSUMER, path)
    try:
        consumer.wait_lines(1, timeout=30)
        producers = [faults.Child(PRODUCER, path, f"p{i}", "400") for i in range(4)]
        for p in producers:
            code, lines = p.finish(timeout=120)
            assert code == 0 and lines[-1] == "done", p.stderr[-2000:]
        expected = {f"p{i}-{k}" for i in range(4) for k in range(400)}
        deadline = time.monotonic() + 60
        while len(values(consumer.lines, "A")) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        consumer.kill()
    acked = values(consumer.lines, "A")
    assert len(acked) == len(set(acked)), "an item was consumed twice"
    assert set(acked) == expected


def test_killing_the_holder_again_and_again_loses_nothing_acknowledged(tmp_path):
    """SIGKILL whoever holds the directory, 50 times, while others enqueue and reserve."""
    path = str(tmp_path / "q")
    rnd = random.Random(7)
    roles = {"holder": HOLDER, "producer": PRODUCER, "consumer": CONSUMER}
    procs: dict[str, faults.Child] = {}
    finished: list[faults.Child] = []
    incarnation = 0

    def start(role: str) -> None:
        nonlocal incarnation
        incarnation += 1
        args = (path, f"g{incarnation}", "100000") if role == "producer" else (path,)
        procs[role] = faults.Child(roles[role], *args)

    start("holder")
    procs["holder"].wait_lines(1, timeout=30)
    start("producer")
    start("consumer")
    kills = 0
    try:
        while kills < 50:
            time.sleep(rnd.uniform(0.05, 0.15))
            pid = _holder_pid(path)
            victim = next((r for r, c in procs.items() if c.proc.pid == pid), None)
            if victim is None:
                continue  # between holders: the file names a process that is gone
            procs[victim].kill()
            finished.append(procs.pop(victim))
            kills += 1
            start(victim)
    finally:
        for child in procs.values():
            child.kill()
            finished.append(child)
    lines = [line for child in finished for line in child.lines]
    enqueued = set(values(lines, "E"))
    acked = set(values(lines, "A"))
    # An ack cut short by a kill, or answered NotReserved after a takeover (its reply
    # may have been lost with the holder), may or may not have landed; every other item
    # the consumer held must be back in the queue.
    maybe_acked = set(values(lines, "K"))
    with dq.Queue(path) as q:
        left = set(item.value for item in q)
    assert enqueued and acked, "the run did no work"
    lost = enqueued - left - acked - maybe_acked
    assert not lost, f"{len(lost)} acknowledged items lost, e.g. {sorted(lost)[:5]}"
    assert len(maybe_acked - acked - left) <= kills, "more cut-short acks than kills"


def _holder_pid(path: str) -> int | None:
    try:
        with open(os.path.join(path, "diskqueue.pid")) as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


def test_a_client_killed_while_holding_a_reservation_gives_it_back(tmp_path):
    path = str(tmp_path / "q")
    with dq.Queue(path) as q:
        q.enqueue_many(["a", "b"])
        child = faults.Child(r"""
import os, sys, time, diskqueue as dq
q = dq.Queue(sys.argv[1])
item = q.reserve(lease=600)
os.write(1, f"R {item.value} {q.role}\n".encode())
time.sleep(600)
""", path)
        try:
            assert child.wait_lines(1, timeout=30) == ["R a client"]
            assert q.in_flight() == 1 and len(q) == 1
        finally:
            child.kill()
        deadline = time.monotonic() + 10
        while q.in_flight() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert q.in_flight() == 0
        item = q.reserve()
        assert (item.value, item.attempts) == ("a", 2)


def test_a_client_killed_in_a_blocking_dequeue_takes_nothing(tmp_path):
    path = str(tmp_path / "q")
    with dq.Queue(path) as q:
        child = faults.Child(r"""
import os, sys, diskqueue as dq
q = dq.Queue(sys.argv[1])
os.write(1, b"waiting\n")
q.dequeue(block=True)
os.write(1, b"got one\n")
""", path)
        try:
            child.wait_lines(1, timeout=30)
            time.sleep(0.3)  # the child is blocked in dequeue, served by this process
        finally:
            child.kill()
        time.sleep(0.5)  # longer than the server's check for a client that left
        q.enqueue("x")
        time.sleep(0.3)
        assert [i.value for i in q] == ["x"]
        assert "got one" not in child.lines


def test_prefork_children_share_the_parents_handle(tmp_path):
    """The gunicorn case: open in the parent, fork workers that keep using the handle."""
    path = str(tmp_path / "q")
    q = dq.Queue(path)
    q.enqueue("before fork")
    pids = []
    for worker in range(3):
        pid = os.fork()
        if pid == 0:  # child: must become a client, never touch the parent's LevelDB
            code = 0
            try:
                if q.role != "client":
                    code = 3
                for i in range(100):
                    q.enqueue(f"w{worker}-{i}")
            except BaseException:
                code = 4
            os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert q.role == "owner"
    got = [item.value for item in q.dequeue_many(1000)]
    assert got[0] == "before fork"
    assert sorted(got[1:]) == sorted(f"w{w}-{i}" for w in range(3) for i in range(100))
    q.close()


def test_garbage_from_a_client_closes_only_that_connection(tmp_path):
    path = str(tmp_path / "q")
    with holding(path) as holder:
        with dq.Queue(path) as q:
            q.enqueue("keep me")
            sock_path = os.path.join(path, protocol.SOCKET_NAME)
            rnd = random.Random(3)
            frames = [
                rnd.randbytes(200),                                 # noise
                struct.pack(">I", 2**31) + b"x" * 100,              # oversized
                struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1",     # not msgpack
                protocol.pack(["drop_everything", [], {}]),         # no such call
                protocol.pack(["push_one", [b"", b""], {"bogus": 1}]),  # bad arguments
                protocol.pack(12345),                               # not a request
            ]
            for frame in frames:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(10)
                    s.connect(sock_path)
                    s.sendall(frame)
                    try:
                        s.shutdown(socket.SHUT_WR)
                        while s.recv(65536):
                            pass
                    except OSError:
                        pass
            assert q.dequeue().value == "keep me"
            q.enqueue("still served")
            assert q.role == "client" and len(q) == 1
        assert holder.proc.poll() is None, "the holder died"


def test_socket_is_private_to_the_user(tmp_path):
    path = str(tmp_path / "q")
    with dq.Queue(path):
        mode = os.stat(os.path.join(path, protocol.SOCKET_NAME)).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert not os.stat(path).st_mode & stat.S_IWOTH


def test_a_directory_path_longer_than_a_socket_path_works(tmp_path):
    deep = tmp_path
    while len(str(deep)) < 200:
        deep = deep / ("d" * 40)
    path = str(deep / "q")
    with holding(path):
        with dq.Queue(path) as q:
            assert q.role == "client"
            q.enqueue("far away")
            assert q.peek().value == "far away"


def test_diskq_stats_works_while_another_process_holds(tmp_path):
    path = str(tmp_path / "q")
    with holding(path):
        with dq.Queue(path) as q:
            q.enqueue_many(range(5))
        done = faults.run_module("diskqueue", "stats", path, "--json")
        assert done.returncode == 0, done.stderr
        assert '"ready": 5' in done.stdout


def test_takeover_after_the_holder_is_killed_is_quick(tmp_path):
    path = str(tmp_path / "q")
    holder = start_holder(path)
    with dq.Queue(path) as q:
        q.enqueue("acknowledged")
        holder.kill()
        started = time.monotonic()
        q.enqueue("after")
        assert time.monotonic() - started < 5
        assert q.role == "owner"
        assert [i.value for i in q][:1] == ["acknowledged"]


def test_the_symlink_route_for_long_paths_reaches_the_directory(tmp_path, monkeypatch):
    """Where /proc/self/fd is missing (macOS), a short symlink in the temp dir is used."""
    deep = tmp_path
    while len(str(deep)) < 200:
        deep = deep / ("e" * 40)
    deep.mkdir(parents=True)
    monkeypatch.setattr(protocol.sys, "platform", "darwin")
    address, keep = protocol.socket_address(str(deep))
    assert keep is None and len(address.encode()) <= 100
    link = os.path.dirname(address)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(address)
            assert stat.S_ISSOCK(os.stat(deep / protocol.SOCKET_NAME).st_mode)
    finally:
        os.unlink(link)


def test_a_long_lived_client_keeps_the_holders_books_small(tmp_path):
    """Every head take of a client is a reservation of its connection until confirmed:
    the holder must forget the confirmed ones, not keep one entry per call forever."""
    path = str(tmp_path / "q")
    with dq.Queue(path) as q:
        q.enqueue_many(range(3000))
        child = faults.Child(r"""
import os, sys, time, diskqueue as dq
q = dq.Queue(sys.argv[1])
for _ in range(2000):
    q.dequeue()
for _ in range(1000):
    q.ack(q.reserve())
os.write(1, b"done\n")
time.sleep(60)
""", path)
        try:
            assert child.wait_lines(1, timeout=60) == ["done"]
            books = q._engine._owned
            assert books, "the client's connection holds no books at all"
            assert max(len(held) for held in books.values()) < 200
            assert len(q) == 0 and q.in_flight() <= 1
        finally:
            child.kill()


def test_threads_of_a_client_do_not_wait_for_each_others_blocking_calls(tmp_path):
    path = str(tmp_path / "q")
    with holding(path):
        with dq.Queue(path) as q:
            assert q.role == "client"
            got: list[object] = []

            def consume() -> None:
                got.append(q.dequeue(block=True, timeout=20).value)

            consumer = threading.Thread(target=consume)
            started = time.monotonic()
            consumer.start()
            time.sleep(0.3)  # the consumer is blocked in the holder
            q.enqueue("wake up")  # must not wait for the consumer's call to end
            consumer.join(timeout=30)
            assert got == ["wake up"]
            assert time.monotonic() - started < 5


def test_batches_of_every_structure_from_a_client(tmp_path):
    """dequeue_many/pop_many of a client: the owner serves the batch as a held take and
    lets it go when the client confirms, including items nacked back to the front."""
    with holding(str(tmp_path / "Queue")), \
            holding(str(tmp_path / "PrefixQueue"), "PrefixQueue"):
        with dq.Queue(str(tmp_path / "Queue")) as q:
            assert q.role == "client"
            q.enqueue_many(range(10))
            q.nack(q.reserve())  # 0 is back at the front, put aside
            first = q.dequeue_many(4)
            assert [(i.id, i.value, i.attempts) for i in first] == [
                (1, 0, 0), (2, 1, 0), (3, 2, 0), (4, 3, 0)]
            assert q.in_flight() == 0
            assert [i.value for i in q.dequeue_many(100)] == list(range(4, 10))
        with dq.Stack(str(tmp_path / "Queue")) as s:
            s.push_many(["a", "b", "c", "d"])
            assert [i.value for i in s.pop_many(3)] == ["d", "c", "b"]
            assert len(s) == 1
        with dq.PrefixQueue(str(tmp_path / "PrefixQueue")) as p:
            assert p.role == "client"
            p.enqueue_many("t1", [1, 2, 3])
            p.enqueue_many("t2", [4])
            got = p.dequeue_many("t1", 5)
            assert [(i.value, i.prefix) for i in got] == [(1, b"t1"), (2, b"t1"), (3, b"t1")]
            assert p.in_flight() == 0 and len(p) == 1
