"""Disk use follows the live data, and opening never walks over consumed keys.

Sizes are the sum of the directory's file sizes (LevelDB tables, log, MANIFEST, LOG).
The bounds are loose sanity bounds: 400k items of 64 bytes are ~40 MB of writes, ~1000
live items are ~100 KB, and LevelDB itself keeps up to one 4 MB write buffer in its log.
Consumed items must not pile up on top of that.
"""

from __future__ import annotations

import time

import pytest

import diskqueue as dq

try:
    from . import faults
except ImportError:
    import faults

MB = 1024 * 1024
VALUE = b"v" * 64


@pytest.mark.timeout(120)
def test_enqueue_dequeue_pairs_keep_the_directory_small(tmp_path):
    path = str(tmp_path / "q")
    peak = 0
    with dq.Queue(path, codec="raw") as q:
        q.enqueue_many([VALUE] * 1000)
        for i in range(400_000):
            q.enqueue(VALUE)
            q.dequeue()
            if i % 25_000 == 0:
                peak = max(peak, faults.dir_size(path))
        assert len(q) == 1000
        head = q.peek()
        assert head.id == 400_001
    after = faults.dir_size(path)
    assert after < 5 * MB, f"{after / MB:.1f} MB on disk for ~1000 live items after close"
    assert peak < 10 * MB, f"the directory reached {peak / MB:.1f} MB while running"
    with dq.Queue(path, codec="raw") as q:
        assert len(q) == 1000
        assert q.dequeue().id == 400_001


@pytest.mark.timeout(120)
def test_batches_and_reservations_keep_the_directory_small(tmp_path):
    """The other ways items leave: dequeue_many across priority levels, and reserve+ack."""
    path = str(tmp_path / "pq")
    with dq.PriorityQueue(path, codec="raw") as q:
        q.enqueue_many([(p, VALUE) for p in (1, 2, 3) for _ in range(300)])
        for _ in range(4000):
            q.enqueue_many([(p, VALUE) for p in (1, 2, 3) for _ in range(33)])
            assert len(q.dequeue_many(99)) == 99
        assert len(q) == 900
    size = faults.dir_size(path)
    assert size < 5 * MB, f"{size / MB:.1f} MB after ~400k items through dequeue_many"

    path = str(tmp_path / "rq")
    with dq.Queue(path, codec="raw") as q:
        q.enqueue_many([VALUE] * 1000)
        for _ in range(80_000):
            q.enqueue(VALUE)
            q.ack(q.reserve())
        assert len(q) == 1000 and q.in_flight() == 0
    size = faults.dir_size(path)
    assert size < 5 * MB, f"{size / MB:.1f} MB after 80k items through reserve+ack"


def _timed_open(cls, path, peek, **kw):
    start = time.perf_counter()
    q = cls(path, **kw)
    n = len(q)
    head = peek(q)
    return q, n, head, time.perf_counter() - start


@pytest.mark.timeout(120)
def test_open_far_along_is_fast(tmp_path):
    path = str(tmp_path / "q")
    with dq.Queue(path, codec="raw") as q:
        for _ in range(300):
            q.enqueue_many([VALUE] * 1000)
            q.dequeue_many(1000)
        q.enqueue_many([b"live-%d" % i for i in range(10)])
    # a warm-up open, then the measured ones: opening reads pointers, not consumed keys
    for attempt in range(3):
        q, n, head, took = _timed_open(dq.Queue, path, lambda q: q.peek(), codec="raw")
        try:
            assert n == 10
            assert head.id == 300_001 and head.value == b"live-0"
            if attempt:
                assert took < 0.5, f"opening after 300k consumed items took {took:.2f} s"
            if attempt == 2:
                assert q.dequeue().value == b"live-0"
        finally:
            q.close()


@pytest.mark.timeout(120)
def test_open_after_many_reservations_is_fast(tmp_path):
    """Reserve+ack leaves deleted reservation records too; opening must not walk them."""
    path = str(tmp_path / "q")
    with dq.PrefixQueue(path, codec="raw") as q:
        for _ in range(60):
            q.enqueue_many("p", [VALUE] * 1000)
            for _ in range(1000):
                q.ack(q.reserve("p"))
        q.enqueue_many("p", [b"live-%d" % i for i in range(10)])
        reserved = q.reserve("p")
        assert reserved.value == b"live-0"
    for attempt in range(3):
        q, n, head, took = _timed_open(dq.PrefixQueue, path, lambda q: q.peek("p"),
                                          codec="raw")
        try:
            assert n == 10 and q.in_flight() == 0
            assert head.id == 60_001 and head.value == b"live-0"
            if attempt:
                assert took < 0.5, f"opening after 60k reservations took {took:.2f} s"
        finally:
            q.close()
