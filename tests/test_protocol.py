"""Frames over a real socket pair: whole frames however they are split, and a reader
that polls only while its peer answers fast."""

from __future__ import annotations

import socket
import struct
import threading
import time
import tracemalloc

import pytest

from diskqueue.sharing import connection, protocol


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_frames_split_across_sends_arrive_whole(pair):
    a, b = pair
    reader = protocol.FrameReader(b)
    wire = protocol.pack(["push_one", [b"x" * 100_000], {}]) + protocol.pack("bye")

    def send_in_pieces():
        for i in range(0, len(wire), 777):
            a.sendall(wire[i:i + 777])
            time.sleep(0.0001)

    sender = threading.Thread(target=send_in_pieces)
    sender.start()
    assert reader.read() == ["push_one", [b"x" * 100_000], {}]
    assert reader.read() == "bye"
    sender.join()


def test_an_idle_peer_stops_the_polling_and_a_quick_one_brings_it_back(pair, monkeypatch):
    monkeypatch.setattr(protocol, "spinning_pays", lambda: True)  # a core is free
    a, b = pair
    reader = protocol.FrameReader(b)
    for _ in range(12):  # a peer that answers only after 20 ms, again and again
        threading.Timer(0.02, a.sendall, [protocol.pack(1)]).start()
        assert reader.read() == 1
    assert reader._polls == 0
    a.sendall(protocol.pack(2))  # already there: the read sleeps for no time at all
    assert reader.read() == 2
    assert reader._polls == protocol.POLLS


def test_a_closed_peer_ends_the_read(pair):
    a, b = pair
    reader = protocol.FrameReader(b)
    a.sendall(protocol.pack("half")[:3])
    a.close()
    with pytest.raises(ConnectionError):
        reader.read()


def _send_later(sock: socket.socket, data: bytes) -> threading.Thread:
    def send() -> None:
        try:
            sock.sendall(data)
        except OSError:  # the reader gave up on the rest
            pass

    sender = threading.Thread(target=send)
    sender.start()
    return sender


def test_a_message_over_a_chunk_travels_in_chunks(pair):
    a, b = pair
    big = b"z" * (2 * protocol.CHUNK + 12345)
    wire = protocol.pack(["reply", big])
    assert len(wire) > len(big) + 8  # several headers
    sender = _send_later(a, wire + protocol.pack("next"))
    reader = protocol.FrameReader(b)
    assert reader.read() == ["reply", big]
    assert reader.read() == "next"
    sender.join()


def test_a_header_is_not_trusted_with_memory(pair):
    """A header announcing a whole chunk, then silence: nothing is allocated for it."""
    a, b = pair
    a.sendall(struct.pack(">I", protocol.CHUNK | 0x80000000) + b"abc")
    reader = protocol.FrameReader(b)
    b.settimeout(0.3)
    tracemalloc.start()
    try:
        with pytest.raises(OSError):  # the time runs out: the rest never came
            reader.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_a_chunk_over_the_chunk_size_ends_the_connection(pair):
    a, b = pair
    a.sendall(struct.pack(">I", protocol.CHUNK + 1))
    with pytest.raises(protocol.ProtocolError):
        protocol.FrameReader(b).read()


def _in_pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_the_holders_inbox_cuts_messages_however_the_bytes_come():
    wire = protocol.pack(["push_one", [b"x" * 100_000], {}]) + protocol.pack("got it") \
        + protocol.pack(b"z" * (protocol.CHUNK + 5))
    for size in (1, 3, 4096, len(wire)):
        inbox = connection.Inbox(None, None)
        got = [m for piece in _in_pieces(wire, max(size, len(wire) // 2000))
               for m in inbox.feed(piece)]
        assert got == [["push_one", [b"x" * 100_000], {}], "got it",
                       b"z" * (protocol.CHUNK + 5)]


def test_a_message_over_the_limit_is_read_past_and_the_next_one_still_arrives():
    inbox = connection.Inbox(100_000, None)
    wire = protocol.pack(b"y" * 200_000) + protocol.pack("small")
    got = [m for piece in _in_pieces(wire, 7000) for m in inbox.feed(piece)]
    assert isinstance(got[0], protocol.TooLarge) and "smaller batches" in str(got[0])
    assert got[1:] == ["small"]


def test_a_shared_budget_bounds_what_inboxes_keep():
    budget = protocol.Budget(1024 * 1024)
    first, second = connection.Inbox(None, budget), connection.Inbox(None, budget)
    big = protocol.pack(b"w" * (3 * 1024 * 1024))
    first.feed(big[:700_000])
    with pytest.raises(protocol.ProtocolError, match="keeps"):
        second.feed(big[:700_000])
    first.release()
    second.release()
    assert budget.used == 0
    assert connection.Inbox(None, budget).feed(protocol.pack("fits")) == ["fits"]
    assert budget.used == 0


def test_an_inbox_refuses_a_chunk_over_the_chunk_size():
    with pytest.raises(protocol.ProtocolError):
        connection.Inbox(None, None).feed(struct.pack(">I", protocol.CHUNK + 1))


def test_an_inbox_fed_one_byte_at_a_time():
    wire = protocol.pack(["take", [b""], {"n": 2}]) + protocol.pack("bye")
    inbox = connection.Inbox(None, None)
    assert [m for piece in _in_pieces(wire, 1) for m in inbox.feed(piece)] == [
        ["take", [b""], {"n": 2}], "bye"]


@pytest.mark.parametrize("core_free", [True, False], ids=["polling", "busy cores"])
def test_a_reply_slower_than_the_kernel_slice_arrives_within_the_callers_bound(
        pair, monkeypatch, core_free):
    # A client's receive times out in the kernel after a short slice and counts its own
    # bound: whether it polls first or just sleeps (every core busy), a reply that comes
    # after several slices but within the bound is read, not taken for a timeout.
    from diskqueue.sharing.client_connection import RECEIVE_SLICE, Connection

    monkeypatch.setattr(protocol, "spinning_pays", lambda: core_free)
    a, b = pair
    conn = Connection(b, None, 1.0)
    conn.bound(2.0)
    threading.Timer(4 * RECEIVE_SLICE, a.sendall, [protocol.pack("late")]).start()
    assert conn.reader.read() == "late"
    conn.bound(3 * RECEIVE_SLICE)
    started = time.monotonic()
    with pytest.raises(OSError):
        conn.reader.read()
    assert 3 * RECEIVE_SLICE - 0.05 <= time.monotonic() - started < 3 * RECEIVE_SLICE + 1.0
