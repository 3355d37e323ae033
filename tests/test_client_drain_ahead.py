"""A client worker reads the records of a batch of jobs with the batch (one round trip,
``get_records``) and writes each job's start guarded (``ack_each(guarded=...)``): only if
the record is still the one it read, so a second copy of a job that ended meanwhile is
still recognised and not run again. And both ends of a client's socket sleep instead of
polling while every core is busy."""

from __future__ import annotations

import math
import socket
import threading

import pytest

import diskqueue as dq
from diskqueue.sharing import protocol

try:
    from . import faults
    from .test_sharing import holding
    from .test_tasks_group_ack import TASK_HOLDER, _nothing
    from .test_tasks_support import until
except ImportError:
    import faults
    from test_sharing import holding
    from test_tasks_group_ack import TASK_HOLDER, _nothing
    from test_tasks_support import until


@pytest.mark.parametrize("role", ["owner", "client"])
def test_get_records_reads_several_records_in_one_call(tmp_path, role):
    path = str(tmp_path / "q")
    with (holding(path) if role == "client" else _nothing()), dq.Queue(path) as q:
        assert q.role == role
        eng = q._engine
        eng.write_records([(b"r", b"a", b"1"), (b"r", b"c", b"3"), (b"s", b"b", b"x")])
        assert eng.get_records(b"r", [b"a", b"b", b"c", b"a"]) == [b"1", None, b"3", b"1"]
        assert eng.get_records(b"r", []) == []


@pytest.mark.parametrize("role", ["owner", "client"])
def test_a_guarded_write_lands_only_while_its_record_is_as_expected(tmp_path, role):
    path = str(tmp_path / "q")
    with (holding(path) if role == "client" else _nothing()), dq.Queue(path) as q:
        assert q.role == role
        eng, ns = q._engine, q._ns
        q.enqueue_many(["a", "b"])
        eng.write_records([(b"r", b"job", b"read")])
        (lane, seq, _, _, attempts), other = eng.take(ns, 2, lease=math.inf)
        ack = (ns, lane, seq, attempts, [(b"r", b"out", b"done")])
        start = (b"r", b"job", b"read", [(b"r", b"job", b"started")])
        assert eng.ack_each([ack], guarded=[start]) == [True, True]
        assert eng.get_records(b"r", [b"out", b"job"]) == [b"done", b"started"]
        # the record is not the one read any more: nothing of the guarded write lands
        stale = (b"r", b"job", b"read", [(b"r", b"job", b"again"), (b"r", b"more", b"x")])
        absent = (b"r", b"none", None, [(b"r", b"none", b"made")])
        assert eng.ack_each([], guarded=[stale, absent]) == [False, True]
        assert eng.get_records(b"r", [b"job", b"more", b"none"]) == [b"started", None, b"made"]
        # an ack not reserved any more is skipped alone, its guarded write still lands
        assert eng.ack_each([ack], guarded=[(b"r", b"job", b"started", [])]) == [False, True]
        assert eng.in_flight(ns) == 1 and other[1] != seq


def test_a_malformed_guarded_write_is_refused_by_the_holder(tmp_path):
    path = str(tmp_path / "q")
    with holding(path), dq.Queue(path) as q:
        q._engine.write_records([(b"r", b"k", b"v")])
        for bad in ([[b"r", 5, None, []]], [[b"r", b"k", b"v"]], [[b"r", b"k", 1, []]]):
            with pytest.raises(TypeError):
                q._engine.call("ack_each", [[]], {"guarded": bad})
        with pytest.raises(TypeError):
            q._engine.call("get_records", [b"r", [b"k", 3]], {})
        for bad_row in ([b"r", None, b"x"], [None, b"k", b"x"], [b"r", b"k"]):
            with pytest.raises(TypeError):  # None only where a value may be deleted
                q._engine.call("write_records", [[bad_row]], {})
        assert q._engine.get_record(b"r", b"k") == b"v"
        q._engine.call("write_records", [[[b"r", b"k", None]]], {})
        assert q._engine.get_record(b"r", b"k") is None


def test_a_job_read_ahead_that_another_copy_ended_meanwhile_is_not_run(tmp_path, caplog):
    """One client thread takes a batch of 10 jobs with their records; the first job ends
    the fifth (as another copy of it would, elsewhere) before the fifth begins: its start
    is refused by the guard, the record read again says it ended, and the job is dropped,
    not run, its outcome kept, the counts exact."""
    path = tmp_path / "jobs"
    holder = faults.Child(TASK_HOLDER, str(path))
    assert holder.wait_lines(1, timeout=30) == ["role owner"]
    try:
        tasks = dq.TaskQueue(path, middleware=())
        ran: list[int] = []
        ids: list[str] = []

        @tasks.task(result_ttl=60)
        def work(n):
            ran.append(n)
            if n == 0:  # another copy of job 5 ended it meanwhile
                record = tasks.store.read(ids[5])
                record.update(state="success", result_kept="elsewhere")
                tasks.store.save(record)
            return n

        with tasks:
            assert tasks.store.engine().role == "client"
            ids += [work.delay(i).id for i in range(20)]
            reads = []
            eng = tasks.store.engine()
            plain = eng.get_records
            eng.get_records = lambda ns, keys: reads.append(len(keys)) or plain(ns, keys)
            worker = tasks.start(concurrency=1)
            try:
                until(lambda: worker.finished == 19, timeout=60, what="every other job")
                until(lambda: tasks.stats()["default"]["in_flight"] == 0, timeout=30,
                      what="the dropped copy to leave its queue")
            finally:
                worker.stop()
            assert reads and reads[0] == 10  # the first batch's records, in one call
            assert f"job {ids[5]} is already success; dropping a second copy" in caplog.text
            assert sorted(ran) == [i for i in range(20) if i != 5]
            fifth = tasks.store.read(ids[5])
            assert (fifth["state"], fifth["result_kept"], fifth.get("attempts", 0)) == (
                "success", "elsewhere", 0)
            for i in set(range(20)) - {5}:
                record = tasks.store.read(ids[i])
                assert (record["state"], record["attempts"]) == ("success", 1)
            stats = tasks.stats()["default"]
            assert (stats["done"], stats["depth"], stats["in_flight"]) == (19, 0, 0)
            # each start counted once: the refused one not at all
            assert sum(worker.runner.counters.latency()["default"].values()) == 19
    finally:
        holder.kill()


class _Counting:
    """A socket's reading side that counts its receives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.calls = 0

    def recv_into(self, *args: object) -> int:
        self.calls += 1
        return self.sock.recv_into(*args)  # type: ignore[arg-type]

    def recv(self, n: int) -> bytes:
        self.calls += 1
        return self.sock.recv(n)


def test_a_read_does_not_poll_while_every_core_is_busy(monkeypatch):
    a, b = socket.socketpair()
    try:
        counting = _Counting(b)
        reader = protocol.FrameReader(counting)  # type: ignore[arg-type]
        for busy, most in ((True, 2), (False, protocol.POLLS + 1)):
            monkeypatch.setattr(protocol, "spinning_pays", lambda busy=busy: not busy)
            counting.calls = 0
            threading.Timer(0.02, a.sendall, [protocol.pack("late")]).start()
            assert reader.read() == "late"
            assert (counting.calls <= 2) if busy else (counting.calls > 2)
            assert counting.calls <= most
    finally:
        a.close()
        b.close()


def test_spinning_pays_only_while_a_core_is_free(monkeypatch):
    for load, pays in ((0.2, True), (protocol._CPUS + 0.5, False)):
        monkeypatch.setattr(protocol.os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        monkeypatch.setattr(protocol, "_load", [-protocol.LOAD_EVERY - 1, not pays])
        assert protocol.spinning_pays() is pays
