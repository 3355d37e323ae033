"""A take a client handed out stays taken when its holder and then the client die.

The holder sends a client's dequeue (or pop) reply, the client hands the item out and
sends its "got it", and the holder is killed before it reads that word. The next
holder keeps the take for the client while it lives; these tests kill the client too,
before it makes another call, which used to put the item back at the front: a
dequeued item came back. The client's codec stops the holder (SIGSTOP) while the reply
is being decoded, so the "got it" reliably lands unread; then both are SIGKILLed, and
the directory is opened again.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from faults import Child
from test_confirm_on_full_disk import HOLDER as FULL_DISK_HOLDER

import diskqueue as dq
from diskqueue.engine import handed, holders, inherited

HOLDER = """
import sys, time, diskqueue as dq
kind = getattr(dq, sys.argv[2])
q = kind(sys.argv[1], codec="json")
for n, value in enumerate(["first", "second", "third"]):
    if kind is dq.Stack:
        q.put(value)
    elif kind is dq.PriorityQueue:
        q.enqueue(n, value)
    else:
        q.enqueue(value)
print("ready", flush=True)
time.sleep(120)
"""

CLIENT = """
import json, os, signal, sys, time, diskqueue as dq

class StopsTheHolder:
    # Decoding runs before the client's "got it" goes out: stop the holder now, and
    # the word waits in its socket unread.
    stopped = False

    def dumps(self, obj):
        return json.dumps(obj).encode()

    def loads(self, data):
        if not self.stopped:
            self.stopped = True
            with open(os.path.join(sys.argv[1], "diskqueue.pid")) as fh:
                pid = int(fh.read().split()[0])
            os.kill(pid, signal.SIGSTOP)
            while True:  # stopped for sure before the word goes out
                with open(f"/proc/{pid}/stat") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[0] == "T":
                        break
                time.sleep(0.001)
        return json.loads(data)

kind = getattr(dq, sys.argv[2])
q = kind(sys.argv[1], codec=StopsTheHolder())
assert q.role == "client"
value = q.pop() if kind is dq.Stack else q.dequeue()
print("handed out", getattr(value, "value", value), flush=True)
time.sleep(120)
"""


# The same client taking two items in one call: each item of the batch is noted, and
# the next holder must find every note.
TAKE = "value = q.pop() if kind is dq.Stack else q.dequeue()"
BATCH = """values = q.pop_many(2) if kind is dq.Stack else q.dequeue_many(2)
value = ",".join(getattr(v, "value", v) for v in values)"""
assert TAKE in CLIENT
CLIENTS = {"one": CLIENT, "batch": CLIENT.replace(TAKE, BATCH)}


@pytest.mark.parametrize("take", ["one", "batch"])
@pytest.mark.parametrize("kind", ["Queue", "Stack", "PriorityQueue"])
def test_a_handed_out_take_stays_taken_when_holder_then_client_die(tmp_path, kind, take):
    path = str(tmp_path / "q")
    holder = Child(HOLDER, path, kind)
    client = None
    try:
        holder.wait_lines(1)
        client = Child(CLIENTS[take], path, kind)
        got = client.wait_lines(1)[0].split(" ", 2)[2].split(",")
        assert len(got) == (2 if take == "batch" else 1)
        holder.kill()  # stopped: the client's "got it" is still unread
        client.kill()  # before it could settle with another holder
        with getattr(dq, kind)(path, codec="json") as q:
            assert q.role == "owner"
            # the take may stay held a moment (the new holder looks at dead clients'
            # takes about once a second), but it never comes back
            _settled(q)
            left = [item.value for item in q]
            assert _notes_of(path, client.proc.pid) == []  # used, then deleted
        assert not set(got) & set(left)
        with getattr(dq, kind)(path, codec="json") as q:  # nor at the next open
            assert [item.value for item in q] == left
        assert sorted(left + got) == ["first", "second", "third"]
    finally:
        _end(holder, client)


# More items in one take than a ring of the last 1,024 notes holds: the notes of a
# take whose "got it" may be unread are never overwritten, whatever follows them.
MANY = 1500
MANY_HOLDER = HOLDER.replace('["first", "second", "third"]', f"[str(n) for n in range({MANY})]")
MANY_CLIENT = CLIENT.replace(TAKE, BATCH.replace("_many(2)", f"_many({MANY})"))
assert MANY_HOLDER != HOLDER and MANY_CLIENT != CLIENT


@pytest.mark.parametrize("kind", ["Queue", "Stack"])
def test_a_handed_out_take_of_many_items_stays_taken_when_holder_then_client_die(
        tmp_path, kind):
    path = str(tmp_path / "q")
    holder = Child(MANY_HOLDER, path, kind)
    client = None
    try:
        holder.wait_lines(1, timeout=60)
        client = Child(MANY_CLIENT, path, kind)
        got = client.wait_lines(1, timeout=60)[0].split(" ", 2)[2].split(",")
        assert len(got) == MANY
        holder.kill()
        client.kill()
        with getattr(dq, kind)(path, codec="json") as q:
            assert q.role == "owner"
            _settled(q)
            assert [item.value for item in q] == []  # not one came back
    finally:
        _end(holder, client)


NO_ROOM_TO_GROW = """
import resource, signal, sys, diskqueue as dq
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
q = dq.Queue(sys.argv[1], codec="json")
assert q.role == "client"
q.dequeue()  # the file of notes is made, with room for 1,024 notes
resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))  # so it cannot grow
try:
    q.dequeue_many(1200)
except dq.DiskQueueError as exc:
    print("refused", "no room for this process's notes" in str(exc), flush=True)
print("left", len(q), flush=True)
print("took", len(q.dequeue_many(1000)), flush=True)
"""


def test_a_take_with_no_room_for_its_notes_is_not_handed_out(tmp_path):
    """A take of more items than the file of notes has room for grows it first; when it
    cannot (a full disk), the take raises and its items stay queued."""
    path = str(tmp_path / "q")
    with dq.Queue(path, codec="json") as q:
        q.enqueue_many([str(n) for n in range(1201)])
        rc, lines = Child(NO_ROOM_TO_GROW, path).finish()
        assert (rc, lines) == (0, ["refused True", "left 1200", "took 1000"])
        assert len(q) == 200
        assert [item.value for item in q] == [str(n) for n in range(1001, 1201)]


def test_a_file_of_notes_deleted_under_its_client_is_made_again_when_it_grows(tmp_path):
    """A cleaner of old files deletes a live client's notes: the next take that needs
    more room than the file had makes it again, with every note it held."""
    path = str(tmp_path)
    ledger = handed.Ledger(path)
    first = [(b"ns", b"", n, 1, -1) for n in range(10)]
    assert ledger.reserve(len(first)) is None
    ledger.note(first, [b"%d" % n for n in range(10)])
    os.unlink(handed.file_of(path, holders.me()))
    more = [(b"ns", b"", n, 1, -1) for n in range(10, 10 + handed.SLOTS)]
    assert ledger.reserve(len(more)) is None
    ledger.note(more, [b"%d" % n for n in range(10, 10 + handed.SLOTS)])
    notes = handed.read(path, holders.me())
    assert notes == {handed.note(take[:3], b"%d" % take[2]) for take in first + more}


def test_a_note_whose_got_it_may_be_unread_outlives_any_number_of_later_takes(tmp_path):
    """One thread's take is still unsettled while others take thousands more: its note
    stays; notes settled are kept as a ring of the last ones and then overwritten."""
    path = str(tmp_path)
    ledger = handed.Ledger(path)
    pending = (b"ns", b"", 7, 1, -1)
    assert ledger.reserve(1) is None
    ledger.note([pending], [b"pending"])
    for n in range(3 * handed.SLOTS):
        take = (b"ns", b"", 100 + n, 1, -1)
        assert ledger.reserve(1) is None
        ledger.note([take], [b"x%d" % n])
        ledger.settled([take])
    notes = handed.read(path, holders.me())
    assert notes is not None
    assert handed.note((b"ns", b"", 7), b"pending") in notes
    last = 3 * handed.SLOTS - 1
    assert handed.note((b"ns", b"", 100 + last), b"x%d" % last) in notes
    assert handed.note((b"ns", b"", 100), b"x0") not in notes  # settled long ago
    assert len(notes) <= handed.SLOTS + 1
    ledger.drop([pending])
    assert handed.note((b"ns", b"", 7), b"pending") not in handed.read(path, holders.me())


def test_a_take_whose_reply_never_arrived_comes_back_when_holder_then_client_die(tmp_path):
    """The other side of the same handover: a client killed before it read its reply
    (so it never handed the item out) loses nothing."""
    path = str(tmp_path / "q")
    holder = Child(HOLDER, path, "Queue")
    client = None
    try:
        holder.wait_lines(1)
        stuck = CLIENT.replace("return json.loads(data)", "time.sleep(120)")
        client = Child(stuck, path, "Queue")
        end = time.monotonic() + 30
        while _state(holder.proc.pid) != "T" and time.monotonic() < end:
            time.sleep(0.02)
        assert _state(holder.proc.pid) == "T"  # stopped while the client decodes
        holder.kill()
        client.kill()
        assert client.lines == []
        with dq.Queue(path, codec="json") as q:
            _settled(q)
            assert [item.value for item in q] == ["first", "second", "third"]
    finally:
        _end(holder, client)


FULL_DISK_CLIENT = """
import os, signal, sys, time, diskqueue as dq
holder = int(sys.argv[2])

def fill_the_disk(_datas):  # runs before the client says "got it"
    os.kill(holder, signal.SIGUSR1)
    time.sleep(0.3)

q = dq.Queue(sys.argv[1])
assert q.role == "client"
taken = q._engine.take(q._ns, 1, check=fill_the_disk)
print("handed out", flush=True)
time.sleep(0.3)
try:
    len(q)  # a reply: the holder read the "got it" (and could not write it)
except dq.DiskQueueError:
    pass
q.close()
"""


@pytest.mark.timeout(60)
def test_a_take_confirmed_on_a_full_disk_stays_taken_when_client_then_holder_go(tmp_path):
    """The holder reads the client's "got it" and cannot write it; the client leaves
    while the disk is still full, and later the holder dies too: the item stays taken."""
    path = str(tmp_path / "q")
    holder = Child(FULL_DISK_HOLDER, path)
    try:
        holder.wait_lines(1)
        client = Child(FULL_DISK_CLIENT, path, str(holder.proc.pid))
        assert client.finish()[0] == 0
        os.kill(holder.proc.pid, signal.SIGUSR2)  # room again
        time.sleep(1.5)  # the holder may write the confirmation meanwhile, or not
    finally:
        holder.kill()
    with dq.Queue(path) as q:
        _settled(q)
        assert len(q) == 0  # the item does not come back


def test_the_notes_of_clients_that_ended_are_deleted(tmp_path, monkeypatch):
    """A client's file of notes outlives it only until the holder's next sweep."""
    monkeypatch.setattr(inherited, "LEDGER_SWEEP_EVERY", 0.0)
    path = str(tmp_path / "q")
    with dq.Queue(path) as q:
        q.enqueue_many(["a", "b"])
        client = Child("""
import sys, diskqueue as dq
q = dq.Queue(sys.argv[1])
print(q.role, q.dequeue().value, flush=True)
q.close()
""", path)
        rc, lines = client.finish()
        assert (rc, lines) == (0, ["client a"])
        end = time.monotonic() + 10
        while _notes_of(path, client.proc.pid) and time.monotonic() < end:
            time.sleep(0.05)
        assert _notes_of(path, client.proc.pid) == []
        assert [item.value for item in q] == ["b"]


def _notes_of(path: str, pid: int) -> list[str]:
    return [name for name in os.listdir(path) if name.startswith(f"diskqueue.handed.{pid}.")]


def _end(*children: Child | None) -> None:
    for child in children:
        if child is not None:
            child.kill()  # SIGKILL ends a stopped process too


def _settled(q) -> None:
    """Wait until the new holder settled what it inherited for dead clients (a Stack's
    held pops are not counted anywhere: wait for two of its looks)."""
    if not hasattr(q, "in_flight"):
        time.sleep(2.5)
        return
    end = time.monotonic() + 5
    while q.in_flight() and time.monotonic() < end:
        time.sleep(0.05)
    assert q.in_flight() == 0


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]
