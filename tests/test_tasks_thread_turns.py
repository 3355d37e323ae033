"""The thread pool's threads join in as they are needed: short jobs run on few threads
(threads taking turns on them cost more than they give), jobs that wait get every
thread, and threads go back to waiting when the jobs turn short again or run out; the
rest of a thread's batch does not wait behind a long job of it."""

from __future__ import annotations

import collections
import threading
import time

import diskqueue as dq

try:
    from .test_tasks_support import until
except ImportError:
    from test_tasks_support import until


def _names_of(tq: dq.TaskQueue) -> collections.Counter[str]:
    """Register ``noop`` (counts the jobs each thread ran) and ``meet`` (waits until four
    jobs run at once; with ``then``, enqueues that many no-ops once they do) on ``tq``."""
    ran: collections.Counter[str] = collections.Counter()
    barrier = threading.Barrier(4, timeout=20)

    @tq.task(result_ttl=0)
    def noop(i):
        ran[threading.current_thread().name] += 1

    @tq.task
    def meet(i, then=0):
        barrier.wait()
        if then:
            tq.enqueue_many("noop", [((k,), {}) for k in range(then)])
        return i

    return ran


def test_jobs_that_wait_get_every_thread_and_the_pool_stops_cleanly(tmp_path):
    with dq.TaskQueue(tmp_path / "jobs") as tq:
        _names_of(tq)
        jobs = [tq.enqueue("meet", i) for i in range(8)]  # two rounds of four at once
        w = tq.start(concurrency=4)
        try:
            assert [j.result(timeout=30) for j in jobs] == list(range(8))
        finally:
            assert w.stop(timeout=10)
        left = [t.name for t in threading.enumerate()
                if t.name.startswith("diskqueue-worker") or t.name == "diskqueue-lookout"]
        assert left == []


def test_slow_jobs_of_one_batch_run_side_by_side(tmp_path):
    # Eight 0.3 s jobs ahead of many short ones: the first thread's batch holds all
    # eight; the other threads take them from it instead of running the short ones.
    lock = threading.Lock()
    now, most = [0], [0]
    with dq.TaskQueue(tmp_path / "jobs") as tq:
        ran = _names_of(tq)

        @tq.task
        def nap(i):
            with lock:
                now[0] += 1
                most[0] = max(most[0], now[0])
            time.sleep(0.3)
            with lock:
                now[0] -= 1
            return i

        naps = [nap.delay(i) for i in range(8)]
        tq.enqueue_many("noop", [((i,), {}) for i in range(2000)])
        w = tq.start(concurrency=4)
        try:
            assert [j.result(timeout=30) for j in naps] == list(range(8))
            until(lambda: w.finished >= 2008, timeout=60, what="the drain")
        finally:
            assert w.stop(timeout=10)
    assert sum(ran.values()) == 2000
    assert most[0] == 4  # (one after the other before)


def test_short_jobs_run_on_one_thread_mostly(tmp_path):
    with dq.TaskQueue(tmp_path / "jobs") as tq:
        ran = _names_of(tq)
        n = 5000
        tq.enqueue_many("noop", [((i,), {}) for i in range(n)])
        w = tq.start(concurrency=4)
        try:
            until(lambda: w.finished >= n, timeout=60, what="the drain")
        finally:
            assert w.stop(timeout=10)
    assert sum(ran.values()) == n
    # (four threads taking turns ran about a quarter each)
    assert ran.most_common(1)[0][1] >= n // 2, ran


def test_threads_go_back_to_waiting_when_jobs_turn_short_or_run_out(tmp_path):
    with dq.TaskQueue(tmp_path / "jobs") as tq:
        ran = _names_of(tq)
        n = 5000
        # four threads must work; the no-ops come while they do
        meets = [tq.enqueue("meet", i, then=n if i == 3 else 0) for i in range(4)]
        w = tq.start(concurrency=4)
        try:
            assert [j.result(timeout=30) for j in meets] == list(range(4))
            until(lambda: w.finished >= n + 4, timeout=60, what="the drain")
            # the queue is empty: all but one thread wait
            until(lambda: len(w.pool.working) == 1, timeout=10, what="threads resting")
        finally:
            assert w.stop(timeout=10)
    assert sum(ran.values()) == n
    assert ran.most_common(1)[0][1] >= n // 2, ran
