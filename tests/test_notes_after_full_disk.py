"""A client process whose first take met a full disk still notes the takes it hands
out once the disk has room again.

Each client process notes the takes it hands out in a file of its own in the
directory, made at its first note (see ``diskqueue.engine.handed``); a next holder
reads it before it puts back a take it held for a client that died. When the disk was
full at that first note the file could not be made, and the process never tried
again: it noted nothing for the rest of its life, so a take it handed out later came
back after its holder and then it died. Here the client's own writes fail while it
takes its first item (``RLIMIT_FSIZE`` 0: for this process no file may grow), then
the limit is lifted and it takes a second one while the holder is stopped, so that its
"got it" lands unread; holder and client are SIGKILLed and the directory is opened
again: the second item must not come back.
"""

from __future__ import annotations

import time

import pytest
from faults import Child
from test_confirm_on_full_disk import HOLDER as FULL_DISK_HOLDER
from test_handed_out import CLIENT, FULL_DISK_CLIENT, HOLDER, _end, _notes_of, _settled

import diskqueue as dq

# test_handed_out's client (its codec stops the holder while the reply is decoded),
# which first takes one item through a second handle while its own writes fail.
TAKE = "value = q.pop() if kind is dq.Stack else q.dequeue()"
FIRST_ON_A_FULL_DISK = """
import resource
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk is an error, not a death
first = kind(sys.argv[1], codec="json")
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))  # a full disk
print("first", first.dequeue().value, flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)  # room again
"""
assert TAKE in CLIENT
CLIENT = CLIENT.replace(TAKE, FIRST_ON_A_FULL_DISK + TAKE)


@pytest.mark.timeout(60)
def test_a_take_handed_out_after_a_full_disk_at_the_first_note_stays_taken(tmp_path):
    path = str(tmp_path / "q")
    holder = Child(HOLDER, path, "Queue")
    client = None
    try:
        holder.wait_lines(1)
        client = Child(CLIENT, path, "Queue")
        assert client.wait_lines(2)[:2] == ["first first", "handed out second"]
        holder.kill()  # stopped: the client's "got it" is still unread
        client.kill()  # before it could settle with another holder
        with dq.Queue(path, codec="json") as q:
            assert q.role == "owner"
            _settled(q)  # the take may stay held a moment, but never comes back
            assert [item.value for item in q] == ["third"]
        with dq.Queue(path, codec="json") as q:  # nor at the next open
            assert [item.value for item in q] == ["third"]
    finally:
        _end(holder, client)


# test_confirm_on_full_disk's holder, whose full disk takes no write at all (a fresh log
# after a failed write would take a few), and which looks for the notes of clients that
# ended at each of its checks (about once a second) instead of every ten seconds.
NOTHING_WRITTEN_HOLDER = (
    "from diskqueue.engine import inherited\ninherited.LEDGER_SWEEP_EVERY = 0.0\n"
    + FULL_DISK_HOLDER.replace("(size, resource.RLIM_INFINITY)", "(0, resource.RLIM_INFINITY)"))
assert NOTHING_WRITTEN_HOLDER.count("(0, resource.RLIM_INFINITY)") == 1


@pytest.mark.timeout(60)
def test_the_notes_of_a_client_whose_confirmation_is_unwritten_outlive_it(tmp_path):
    """The holder reads a client's "got it" and cannot write it; the client ends while
    the disk is still full, and the holder dies before it could write it: the next
    holder needs the client's notes to know it had the item, so the holder that still
    meant to write the confirmation must not delete them when it deletes the notes of
    clients that ended."""
    path = str(tmp_path / "q")
    holder = Child(NOTHING_WRITTEN_HOLDER, path)
    client = None
    try:
        holder.wait_lines(1)
        client = Child(FULL_DISK_CLIENT, path, str(holder.proc.pid))
        assert client.finish() == (0, ["handed out"])
        time.sleep(2.5)  # two of the holder's checks, the disk still full
        assert _notes_of(path, client.proc.pid)  # kept for the next holder
    finally:
        _end(holder, client)  # the confirmation still unwritten
    with dq.Queue(path) as q:
        _settled(q)
        assert list(q) == []  # the item does not come back
