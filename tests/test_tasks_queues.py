"""Named queues, priorities (higher first), several queues per worker (strict order or
weights), ``unique_key`` dedupe, and ``rate_limit``."""

from __future__ import annotations

import threading
import time

import diskqueue as dq

try:
    from .test_tasks_support import FakeClock, until
except ImportError:
    from test_tasks_support import FakeClock, until


def test_higher_priority_runs_first_fifo_within_a_priority(tasks):
    order = []

    @tasks.task
    def step(tag):
        order.append(tag)

    step.apply(("low-1",), priority=-5)
    step.apply(("mid-1",))
    step.apply(("high-1",), priority=10)
    step.apply(("mid-2",))
    step.apply(("high-2",), priority=10)
    step.apply(("top",), priority=2**63 - 1)
    w = tasks.start(concurrency=1)
    try:
        until(lambda: len(order) == 6, what="six runs")
    finally:
        w.stop()
    assert order == ["top", "high-1", "high-2", "mid-1", "mid-2", "low-1"]


def test_queues_in_strict_order_and_unserved_queues_wait(tasks):
    order = []

    @tasks.task(queue="bulk")
    def bulk(n):
        order.append(("bulk", n))

    @tasks.task(queue="urgent")
    def urgent(n):
        order.append(("urgent", n))

    @tasks.task(queue="other")
    def other(n):
        order.append(("other", n))

    for n in range(3):
        bulk.delay(n)
        urgent.delay(n)
        other.delay(n)
    w = tasks.start(concurrency=1, queues=["urgent", "bulk"])
    try:
        until(lambda: len(order) == 6, what="six runs")
        time.sleep(0.2)
    finally:
        w.stop()
    assert order == [("urgent", n) for n in range(3)] + [("bulk", n) for n in range(3)]
    assert tasks.stats()["other"]["depth"] == 3
    assert other.apply((9,), queue="bulk").queue == "bulk"


def test_weighted_queues_share_the_worker(tasks):
    order = []
    gate = threading.Event()

    @tasks.task(queue="a")
    def a():
        gate.wait(10)
        order.append("a")

    @tasks.task(queue="b")
    def b():
        gate.wait(10)
        order.append("b")

    for _ in range(200):
        a.delay()
        b.delay()
    w = tasks.start(concurrency=1, queues={"a": 3, "b": 1})
    try:
        gate.set()
        until(lambda: len(order) >= 100, what="100 runs")
    finally:
        w.stop()
    first = order[:100]
    assert 55 <= first.count("a") <= 92, first.count("a")  # about 75 of 100
    assert first.count("b") >= 8


def test_unique_key_returns_the_pending_job_until_it_finishes(tasks):
    gate = threading.Event()
    runs = []

    @tasks.task
    def charge(order_id):
        gate.wait(10)
        runs.append(order_id)
        return order_id

    first = charge.apply(("o-42",), unique_key="order-42")
    again = charge.apply(("o-42",), unique_key="order-42")
    later = charge.apply(("o-42",), unique_key="order-42", delay=100)
    other = charge.apply(("o-43",), unique_key="order-43")
    assert again.id == first.id == later.id and other.id != first.id
    w = tasks.start(concurrency=1)
    try:
        until(lambda: first.state == "started", what="a start")
        assert charge.apply(("o-42",), unique_key="order-42").id == first.id  # still running
        gate.set()
        assert first.result(timeout=10) == "o-42"
        other.result(timeout=10)
        fresh = charge.apply(("o-42",), unique_key="order-42")  # the first one finished
        assert fresh.id != first.id
        assert fresh.result(timeout=10) == "o-42"
    finally:
        w.stop()
    assert runs == ["o-42", "o-43", "o-42"]


def test_unique_key_is_atomic_across_threads(tasks):
    @tasks.task
    def once():
        return None

    ids = []

    def enqueue():
        for _ in range(50):
            ids.append(once.apply(unique_key="only").id)

    threads = [threading.Thread(target=enqueue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert tasks.stats()["default"]["depth"] == 1


def test_rate_limit_bounds_starts_per_task(tmp_path):
    clock = FakeClock()
    tq = dq.TaskQueue(tmp_path / "jobs", clock=clock)
    limited, free = [], []

    @tq.task(rate_limit="10/s")
    def slow():
        limited.append(clock())

    @tq.task
    def fast():
        free.append(clock())

    for _ in range(20):
        slow.delay()
    for _ in range(5):
        fast.delay()
    w = tq.start(concurrency=2)
    try:
        until(lambda: len(limited) == 10 and len(free) == 5, what="the burst")
        time.sleep(0.6)  # the clock stands still: no more tokens
        assert len(limited) == 10
        assert tq.stats()["default"]["scheduled"] == 10  # deferred, not blocking anyone
        clock.advance(0.55)  # five tokens
        until(lambda: len(limited) == 15, what="five more")
        time.sleep(0.6)
        assert len(limited) == 15
        clock.advance(1)
        until(lambda: len(limited) == 20, what="the rest")
    finally:
        w.stop()
        tq.close()
