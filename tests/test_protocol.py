"""Frames over a real socket pair: whole frames however they are split, and a reader
that polls only while its peer answers fast."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from diskqueue import protocol


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


def test_an_idle_peer_stops_the_polling_and_a_quick_one_brings_it_back(pair):
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
