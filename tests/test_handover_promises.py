"""SPEC §6 across handovers, with real processes and signals: a reservation of a live
client is not handed to anyone else when the holder changes, and an item that dequeue
returned to a live client never comes back, whichever way the holder left."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import faults
import pytest

import diskqueue as dq
from diskqueue.sharing import peercred, protocol

HOLDER = """
import sys, time, diskqueue as dq
q = getattr(dq, sys.argv[3] if len(sys.argv) > 3 else "Queue")(sys.argv[1])
for i in range(int(sys.argv[2])):
    q.put(i)
print(q.role, flush=True)
time.sleep(3600)
"""

RESERVER = """
import os, sys, time, diskqueue as dq
path = sys.argv[1]
q = dq.Queue(path, connect_timeout=5)
item = q.reserve(lease=60)
print(item.value, q.role, flush=True)
while not os.path.exists(os.path.join(path, "..", "ack")):
    time.sleep(0.02)
q.ack(item)
print("acked", flush=True)
time.sleep(3600)
"""


def _holder_pid(path: str) -> Optional[int]:
    """The pid of the process serving ``path`` now, as the kernel says (None: nobody)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(1)
        sock.connect(os.path.join(path, protocol.SOCKET_NAME))
        peer = peercred.peer_of(sock)
        return peer.pid if peer else None
    except OSError:
        return None
    finally:
        sock.close()


def _reserved_then_holder_killed(tmp_path: Path) -> tuple[str, faults.Child, dq.Queue]:
    """A holder with items 0..4, a client that reserved item 0; the holder is
    SIGKILLed and this process opens the directory: it is the new holder."""
    path = str(tmp_path / "q")
    holder = faults.Child(HOLDER, path, "5")
    assert holder.wait_lines(1) == ["owner"]
    client = faults.Child(RESERVER, path)
    assert client.wait_lines(1) == ["0 client"]
    holder.kill()
    q = dq.Queue(path)
    assert q.role == "owner"
    return path, client, q


def test_live_clients_reservation_is_not_handed_over_and_it_acks_on_the_new_holder(tmp_path):
    path, client, q = _reserved_then_holder_killed(tmp_path)
    try:
        assert q.in_flight() == 1
        assert [q.dequeue().value for _ in range(4)] == [1, 2, 3, 4]
        with pytest.raises(dq.Empty):
            q.dequeue()
        (tmp_path / "ack").touch()
        assert client.wait_lines(2)[1] == "acked"
        assert q.in_flight() == 0
        with pytest.raises(dq.Empty):
            q.dequeue()
    finally:
        client.kill()
        q.close()


def test_reservation_of_a_client_that_dies_after_the_handover_comes_back(tmp_path):
    path, client, q = _reserved_then_holder_killed(tmp_path)
    try:
        assert [q.dequeue().value for _ in range(4)] == [1, 2, 3, 4]
        client.kill()
        item = q.reserve(block=True, timeout=3)  # the holder looks every second or so
        assert (item.value, item.attempts) == (0, 2)
        q.ack(item)
    finally:
        q.close()


OWNER_THAT_CLOSES = """
import os, sys, time, diskqueue as dq
path = sys.argv[1]
q = dq.Queue(path)
q.enqueue_many([0, 1, 2])
item = q.reserve(lease=60)
print(item.value, q.role, flush=True)
q.close()
print("closed", flush=True)
while not os.path.exists(os.path.join(path, "..", "ack")):
    time.sleep(0.02)
q = dq.Queue(path)
q.ack(item)
print("acked", q.role, flush=True)
q.close()
"""


def test_owner_that_closes_ends_its_own_reservations_as_a_client_that_closes_does(tmp_path):
    """Decided: the holder's own reservations end when it closes the directory (its
    handles, which could ack them, are closed), as a client's end with its connection;
    the next open returns them, and a later ack by id says NotReserved."""
    path = str(tmp_path / "q")
    owner = faults.Child(OWNER_THAT_CLOSES, path)
    try:
        assert owner.wait_lines(2) == ["0 owner", "closed"]
        q = dq.Queue(path)
        try:
            assert q.role == "owner"
            assert q.in_flight() == 0
            item = q.reserve(lease=60)
            assert (item.value, item.attempts) == (0, 2)
            (tmp_path / "ack").touch()
            rc, _ = owner.finish(timeout=30)
            assert rc == 1 and b"NotReserved" in owner.stderr
            q.ack(item)
        finally:
            q.close()
    finally:
        owner.kill()


CONSUMER = """
import os, sys, time, diskqueue as dq
path, kind = sys.argv[1], getattr(dq, sys.argv[2])
stop = os.path.join(path, "..", "stop")
q = kind(path, connect_timeout=5)
while True:
    try:
        item = q.get(timeout=0.2)
    except dq.Empty:
        if os.path.exists(stop):
            break
    else:
        print(item, flush=True)
        time.sleep(0.001)
    if q.role == "owner":  # leave holding to the standbys: reopen as a client
        q.close()
        time.sleep(0.05)
        q = kind(path, connect_timeout=5)
print("done", flush=True)
"""

STANDBY = """
import os, sys, time, diskqueue as dq
path, mode = sys.argv[1], sys.argv[2]
q = dq.Queue(path, connect_timeout=5)
while q.role != "owner":
    len(q)
    time.sleep(0.002)
print("holding", flush=True)
if mode == "close":
    time.sleep(0.3)
    q.close()
    print("closed", flush=True)
    time.sleep(3600)
time.sleep(3600)
"""


def _storm(tmp_path: Path, how: str, rounds: int, items: int = 3000,
           kind: str = "Queue") -> None:
    """A consumer dequeues in a loop while the holder leaves ``rounds`` times (``how``:
    SIGKILL, SIGTERM or close); no item may come back, none may be lost."""
    path = str(tmp_path / "q")
    first = faults.Child(HOLDER, path, str(items), kind)
    first.wait_lines(1)
    consumer = faults.Child(CONSUMER, path, kind)
    children = [first, consumer]
    try:
        holder = first
        consumer.wait_lines(20)
        for n in range(rounds):
            standby = faults.Child(STANDBY, path, how)
            children.append(standby)
            time.sleep(0.05)
            if how == "term":
                holder.proc.send_signal(signal.SIGTERM)
            elif how == "kill" or n == 0:  # a closing standby leaves by itself
                holder.proc.send_signal(signal.SIGKILL)
            standby.wait_lines(1, timeout=20)
            holder = standby
            time.sleep(0.1)
        if how == "close":  # the last one left by itself: one more holds to the end, so
            # the rest is drained by a client, not by the consumer reopening per item
            children.append(faults.Child(STANDBY, path, "hold"))
            children[-1].wait_lines(1, timeout=20)
        (tmp_path / "stop").touch()
        rc, lines = consumer.finish(timeout=120)
        assert rc == 0, consumer.stderr.decode(errors="replace")[-2000:]
    finally:
        for child in children:
            child.kill()
    got = [int(line) for line in lines if line != "done"]
    twice = {value: n for value, n in Counter(got).items() if n > 1}
    assert twice == {}, f"{len(twice)} items came back after {rounds} handovers"
    assert sorted(got) == list(range(items)), f"{items - len(set(got))} items lost"


def test_dequeued_items_never_come_back_under_a_sigkill_storm(tmp_path):
    _storm(tmp_path, "kill", 30)


def test_dequeued_items_never_come_back_under_sigterm(tmp_path):
    _storm(tmp_path, "term", 15)


def test_dequeued_items_never_come_back_across_graceful_closes(tmp_path):
    _storm(tmp_path, "close", 15)


def test_popped_items_never_come_back_under_a_sigkill_storm(tmp_path):
    _storm(tmp_path, "kill", 20, kind="Stack")


def test_confirm_is_checked_like_every_request(tmp_path):
    path = str(tmp_path / "q")
    holder = faults.Child(HOLDER, path, "2")
    try:
        holder.wait_lines(1)
        q = dq.Queue(path)
        try:
            assert q.role == "client"
            engine = q._engine
            with pytest.raises(TypeError, match="takes"):
                engine.call("confirm", [["not a key"], [], True], {})
            with pytest.raises(TypeError, match="holder"):
                engine.call("confirm", [[], [], True], {"holder": [1, 2]})
            assert engine.call("confirm", [[[b"", b"", 1, 0, -1]], [], False], {}) is False
            assert [q.dequeue().value, q.dequeue().value] == [0, 1]  # nothing changed
        finally:
            q.close()
    finally:
        holder.kill()
