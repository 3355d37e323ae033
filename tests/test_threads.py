"""Many threads on one object: 8 producers and 8 consumers at once, every item consumed
exactly once (and, with reserve/ack, acked exactly once)."""

from __future__ import annotations

import collections
import itertools
import threading
import time

import pytest

import diskqueue as dq

PRODUCERS = CONSUMERS = 8
PER_PRODUCER = 500
TOTAL = PRODUCERS * PER_PRODUCER
PREFIXES = ["a", "a:", b"b\x00"]


def run_threads(targets):
    """Run each target in its own thread; fail on a hang or on any exception."""
    errors = []

    def guarded(target):
        def run():
            try:
                target()
            except BaseException as exc:  # noqa: B036 - reported below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not [t for t in threads if t.is_alive()], "threads hung"
    assert errors == []


class Tally:
    """Items taken by the consumers, shared between them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[dq.Item] = []

    def add(self, items):
        with self.lock:
            self.items.extend(items)

    def done(self):
        with self.lock:
            return len(self.items) >= TOTAL


def producer(n, put):
    def run():
        for k in range(PER_PRODUCER):
            put(n, (n, k))
    return run


def consumer(take, tally):
    def run():
        while not tally.done():
            try:
                tally.add(take())
            except dq.Empty:
                pass
    return run


def check_exactly_once(tally, handle):
    values = [tuple(item.value) for item in tally.items]
    expected = [(n, k) for n in range(PRODUCERS) for k in range(PER_PRODUCER)]
    assert collections.Counter(values) == collections.Counter(expected)
    assert len(handle) == 0


def open_for(kind, path):
    """(handle, put(producer, value), take() -> list of items) for one structure."""
    if kind == "queue":
        q = dq.Queue(path)
        batch = itertools.count()
        return q, lambda n, v: q.enqueue(v), lambda: (
            q.dequeue_many(5, block=True, timeout=0.02) if next(batch) % 2
            else [q.dequeue(block=True, timeout=0.02)])
    if kind == "stack":
        st = dq.Stack(path)
        return st, lambda n, v: st.push(v), lambda: [st.pop(block=True, timeout=0.02)]
    if kind == "priority":
        pq = dq.PriorityQueue(path)
        return pq, lambda n, v: pq.enqueue(v[1] % 5 - 2, v), lambda: [
            pq.dequeue(block=True, timeout=0.02)]
    px = dq.PrefixQueue(path)
    rotation = itertools.cycle(PREFIXES)
    return px, lambda n, v: px.enqueue(PREFIXES[n % 3], v), lambda: [
        px.dequeue(next(rotation), block=True, timeout=0.005)]


@pytest.mark.parametrize("kind", ["queue", "stack", "priority", "prefix"])
def test_producers_and_consumers_move_every_item_exactly_once(tmp_path, kind):
    handle, put, take = open_for(kind, tmp_path / "q")
    with handle:
        tally = Tally()
        run_threads([producer(n, put) for n in range(PRODUCERS)]
                    + [consumer(take, tally) for _ in range(CONSUMERS)])
        check_exactly_once(tally, handle)
        ids = [(item.priority, item.prefix, item.id) for item in tally.items]
        assert len(set(ids)) == TOTAL or kind == "stack"  # a Stack may reuse popped ids


def test_each_producer_keeps_its_fifo_order(tmp_path):
    with dq.Queue(tmp_path / "q") as q:
        tally = Tally()
        run_threads([producer(n, lambda n, v: q.enqueue(v)) for n in range(PRODUCERS)]
                    + [consumer(lambda: [q.dequeue(block=True, timeout=0.02)], tally)
                       for _ in range(CONSUMERS)])
        check_exactly_once(tally, q)
        by_id = sorted(tally.items, key=lambda item: item.id)
        assert [item.id for item in by_id] == list(range(1, TOTAL + 1))
        for n in range(PRODUCERS):
            assert [item.value[1] for item in by_id if item.value[0] == n] == list(
                range(PER_PRODUCER))


def test_stdlib_put_get_task_done_join_across_threads(tmp_path):
    with dq.Queue(tmp_path / "q") as q:
        got = Tally()

        def worker():
            while True:
                value = q.get()
                if value is None:
                    q.task_done()
                    return
                got.add([tuple(value)])
                q.task_done()

        workers = [threading.Thread(target=worker) for _ in range(CONSUMERS)]
        for w in workers:
            w.start()
        run_threads([producer(n, lambda n, v: q.put(v)) for n in range(PRODUCERS)])
        q.join()
        assert sorted(got.items) == sorted(
            (n, k) for n in range(PRODUCERS) for k in range(PER_PRODUCER))
        for _ in workers:
            q.put(None)
        for w in workers:
            w.join(10)
        assert not any(w.is_alive() for w in workers)


@pytest.mark.parametrize("kind", ["queue", "priority", "prefix"])
def test_concurrent_reserve_ack_and_nack(tmp_path, kind):
    handle, put, _ = open_for(kind, tmp_path / "q")
    rotation = itertools.cycle(PREFIXES)

    def reserve():
        if kind == "prefix":
            return handle.reserve(next(rotation), block=True, timeout=0.005)
        return handle.reserve(block=True, timeout=0.02)

    acked = Tally()
    nacks = collections.Counter()
    lock = threading.Lock()

    def reliable_consumer():
        while not acked.done():
            try:
                item = reserve()
            except dq.Empty:
                continue
            value = tuple(item.value)
            if item.attempts == 1 and value[1] % 4 == 0:  # refuse once, to the front or back
                with lock:
                    nacks[value] += 1
                handle.nack(item, front=value[1] % 8 == 0)
            else:
                handle.ack(item)
                acked.add([item])

    with handle:
        run_threads([producer(n, put) for n in range(PRODUCERS)]
                    + [reliable_consumer for _ in range(CONSUMERS)])
        check_exactly_once(acked, handle)
        assert handle.in_flight() == 0
        for item in acked.items:
            refused = nacks[tuple(item.value)]
            assert refused == (1 if item.value[1] % 4 == 0 else 0)
            assert item.attempts == 1 + refused


def test_a_thread_waiting_for_ever_gets_an_item_whose_lease_made_later_ended(tmp_path):
    """A thread in ``dequeue(block=True)`` woken by a push whose item another thread
    reserved first sleeps on until that lease ends, then takes the item back."""
    with dq.Queue(tmp_path / "q") as q:
        for _ in range(50):
            got: list[object] = []
            waiter = threading.Thread(
                target=lambda out=got: out.append(q.dequeue(block=True).value))
            waiter.start()
            time.sleep(0.05)  # it waits, with no lease to wait for
            q.enqueue("b")
            try:
                q.reserve(lease=0.3)
            except dq.Empty:  # the waiter took it first: the case to test did not arise
                waiter.join(5)
                assert got == ["b"]
                continue
            started = time.monotonic()
            waiter.join(5)
            assert got == ["b"], "the waiting thread missed the item whose lease ended"
            assert time.monotonic() - started >= 0.25
            assert q.in_flight() == 0
            return
        pytest.fail("the waiting thread took the item first in every attempt")


def test_a_push_wakes_the_thread_waiting_for_its_prefix_not_only_the_oldest_waiter(tmp_path):
    """Threads wait on different prefixes; the oldest waits for one that gets nothing.
    A push for the newest must wake the newest (waking only the oldest would leave it
    asleep until its timeout)."""
    q = dq.PrefixQueue(tmp_path / "q")
    got: dict[bytes, object] = {}

    def wait(prefix: bytes) -> None:
        try:
            got[prefix] = q.dequeue(prefix, block=True, timeout=5).value
        except dq.Empty:
            got[prefix] = None

    waiters = {}
    for prefix in (b"c", b"b", b"a"):  # oldest first
        waiters[prefix] = threading.Thread(target=wait, args=(prefix,))
        waiters[prefix].start()
        time.sleep(0.05)
    started = time.monotonic()
    q.enqueue(b"a", "for a")
    waiters[b"a"].join(10)
    assert got.get(b"a") == "for a"
    assert time.monotonic() - started < 2, "the waiter of b'a' slept until its timeout"
    q.enqueue(b"b", "for b")
    q.enqueue(b"c", "for c")
    for thread in waiters.values():
        thread.join(10)
    assert got == {b"a": "for a", b"b": "for b", b"c": "for c"}
    q.close()
