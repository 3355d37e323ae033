"""Hostile and careless requests against a live holder in another process.

Every request is checked before it runs: a bad one gets an error reply (``TypeError``
or ``ValueError``) and the connection stays up. Random frames and random calls, found
by hypothesis, never bring the holder down, never stop it serving a well-behaved
client, and leave its file descriptors, threads and memory as they were.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sharing import holding

import diskqueue as dq
from diskqueue.sharing import protocol, requests

BAD = [
    (["peek", [b"", -1], {}], "ValueError"),
    (["peek", [b"", 0], {"lane": 5}], "TypeError"),
    (["push_unless", [b"", [[b"", b"v"]], [b"only one"]], {}], "TypeError"),
    (["push_unless", [b"", [[b"", b"v"]], None], {}], "TypeError"),
    (["take", [b""], {"owner": "me"}], "TypeError"),
    (["take", [b"", 1], {"timeout": float("nan"), "block": True}], "ValueError"),
    (["take", [b"", 1], {"lease": -1.0}], "ValueError"),
    (["take", [b"", True], {}], "TypeError"),
    (["get", [b"", b"", 1, 2, 3, 4], {}], "TypeError"),
    (["get", [b""], {}], "TypeError"),
    (["push_one", [b"", b"", "not bytes"], {}], "TypeError"),
    (["push", [b"", [[b"", b"a", b"extra"]]], {}], "TypeError"),
    (["ack_many", [[[b"", b"", 1]]], {}], "TypeError"),
    (["scan", [b""], {"after": [b"", "x"]}], "TypeError"),
    (["length", [b"x" * 300], {}], "ValueError"),
    (["nope", [], {}], "TypeError"),
    ([1, [], {}], "TypeError"),
    (["info", {}, []], "TypeError"),
    (["info", [], {}, "tomorrow"], "TypeError"),
    (["info"], "TypeError"),
    ("hello", "TypeError"),
    (12345, "TypeError"),
    (None, "TypeError"),
]


class Conn:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(os.path.join(path, protocol.SOCKET_NAME))
        self.reader = protocol.FrameReader(self.sock)

    def ask(self, request: object) -> list:
        self.sock.sendall(protocol.pack(request))
        return self.reader.read()

    def close(self) -> None:
        self.sock.close()


def test_bad_requests_get_an_error_reply_on_a_connection_that_stays_up(tmp_path):
    path = str(tmp_path / "q")
    with holding(path) as holder, dq.Queue(path) as q:
        q.enqueue("keep me")
        conn = Conn(path)
        try:
            for request, error in BAD:
                reply = conn.ask(request)
                assert reply[:2] == [1, error], (request, reply)
            # the same connection still serves, and a keyword ns is fine
            assert conn.ask(["take", [], {"ns": b"", "n": 1, "lease": 30.0}])[0] == 0
            assert conn.ask(["in_flight", [b""], {}]) == [0, 1]
            assert conn.ask(["info", [], {}, time.time() - 1])[:2] == [1, "Expired"]
            assert conn.ask(["length", [b""], {}, time.time() + 60]) == [0, 0]
        finally:
            conn.close()
        assert holder.proc.poll() is None
    assert b"Traceback" not in holder.stderr, holder.stderr.decode()[-3000:]


# -- fuzzing -------------------------------------------------------------------
_NAMES = sorted({name for m in requests.METHODS
                 for name in requests._shape(m).by_name} | {"owner", "check", "x"})
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
    | st.floats(allow_nan=True) | st.binary(max_size=40) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4), max_leaves=12,
)
_calls = st.builds(
    lambda method, args, kwargs, deadline: [method, args, kwargs, *deadline],
    st.sampled_from(sorted(requests.METHODS) + ["nope", ""]) | st.text(max_size=8),
    st.lists(_values, max_size=7),
    st.dictionaries(st.sampled_from(_NAMES), _values, max_size=4),
    st.lists(st.floats() | st.none(), max_size=1),
)


def _frames(data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["call", "call", "call", "noise", "cut", "huge",
                                      "chunks", "shape"]))
    if kind == "call":
        return protocol.pack(data.draw(_calls))
    if kind == "noise":
        return data.draw(st.binary(min_size=1, max_size=300))
    if kind == "cut":
        whole = protocol.pack(data.draw(_calls))
        return whole[: data.draw(st.integers(0, len(whole) - 1))]
    if kind == "huge":  # a header announcing far more than ever comes
        size = data.draw(st.integers(protocol.CHUNK - 10, 2**32 - 1))
        return struct.pack(">I", size) + data.draw(st.binary(max_size=50))
    if kind == "chunks":  # a message in many small chunks, perhaps never finished
        body = data.draw(st.binary(max_size=200))
        out = b"".join(struct.pack(">I", 1 | 0x80000000) + body[i:i + 1]
                       for i in range(len(body)))
        return out + data.draw(st.sampled_from([b"", struct.pack(">I", 0)]))
    return protocol.pack(data.draw(_values))


def _holder_stats(pid: int) -> tuple[int, int, int]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as fh:
        status = dict(line.split(":", 1) for line in fh)
    return fds, int(status["Threads"]), int(status["VmRSS"].split()[0])


def _settled_stats(pid: int, floor: tuple[int, int, int]) -> tuple[int, int, int]:
    """The holder's figures once its connections have wound down (blocking calls of
    clients that left notice it within a slice)."""
    deadline = time.monotonic() + 10
    while True:
        stats = _holder_stats(pid)
        if stats[0] <= floor[0] + 2 and stats[1] <= floor[1] + 2 \
                or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def _send_and_leave(path: str, frame: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(os.path.join(path, protocol.SOCKET_NAME))
        try:
            s.sendall(frame)
            s.recv(65536)  # a reply, the end of the connection, or the time running out
        except OSError:
            pass


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fuzz") / "q")
    with holding(path) as holder:
        with dq.Queue(path) as q:
            q.enqueue_many(range(20))
        time.sleep(0.5)
        yield path, holder, _holder_stats(holder.proc.pid)
    # nothing raised inside the holder (its log would show the traceback)
    assert b"Traceback" not in holder.stderr, holder.stderr.decode()[-3000:]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_frames_never_bring_the_holder_down(live, data):
    path, holder, _ = live
    _send_and_leave(path, _frames(data))
    assert holder.proc.poll() is None, holder.stderr[-2000:]


def test_after_the_fuzzing_the_holder_serves_and_leaks_nothing(live):
    path, holder, before = live
    with dq.Queue(path) as q:
        assert q.role == "client"
        q.enqueue("well behaved")
        assert "well behaved" in [i.value for i in q]
    fds, threads, rss = _settled_stats(holder.proc.pid, before)
    assert fds <= before[0] + 2, (before, (fds, threads, rss))
    assert threads <= before[1] + 2, (before, (fds, threads, rss))
    assert rss < before[2] + 100 * 1024, (before, (fds, threads, rss))
    assert holder.proc.poll() is None
