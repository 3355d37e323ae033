"""The three pools: threads (default), an event loop for ``async def`` tasks with bounded
concurrency, and child processes with timeouts enforced by killing the child."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
import time

import pytest

import diskqueue as dq

try:
    from .test_tasks_support import until, write_app
except ImportError:
    from test_tasks_support import until, write_app


def test_async_pool_runs_coroutines_with_bounded_concurrency_and_sync_tasks(tmp_path):
    tq = dq.TaskQueue(tmp_path / "jobs")
    now_running = [0]
    most = [0]
    threads = set()

    @tq.task
    async def fetch(n):
        now_running[0] += 1
        most[0] = max(most[0], now_running[0])
        threads.add(threading.get_ident())
        await asyncio.sleep(0.2)
        now_running[0] -= 1
        return n * 10

    @tq.task
    def plain(n):
        return -n

    @tq.task(timeout=0.2, retries=0)
    async def hangs():
        await asyncio.sleep(30)

    jobs = [fetch.delay(n) for n in range(20)]
    syncs = [plain.delay(n) for n in range(3)]
    stuck = hangs.delay()
    started = time.monotonic()
    w = tq.start(concurrency=5, pool="async")
    try:
        assert [j.result(timeout=20) for j in jobs] == [n * 10 for n in range(20)]
        elapsed = time.monotonic() - started
        assert [j.result(timeout=10) for j in syncs] == [0, -1, -2]
        with pytest.raises(dq.JobTimeout):
            stuck.result(timeout=10)
    finally:
        assert w.stop(timeout=5)
        tq.close()
    assert most[0] == 5  # bounded, and really concurrent
    assert len(threads) == 1  # one event loop
    assert elapsed < 0.2 * 20 / 2, elapsed


def test_async_task_in_the_thread_pool_runs_on_its_own_loop(tmp_path):
    with dq.TaskQueue(tmp_path / "jobs") as tq:
        @tq.task
        async def double(x):
            await asyncio.sleep(0.01)
            return 2 * x

        job = double.delay(21)
        w = tq.start(concurrency=1)
        try:
            assert job.result(timeout=10) == 42
        finally:
            w.stop()


def test_thread_pool_timeout_fails_the_job_and_a_new_thread_takes_over(tmp_path):
    release = threading.Event()
    with dq.TaskQueue(tmp_path / "jobs") as tq:
        @tq.task(timeout=0.3)
        def stuck():
            release.wait(20)
            return "too late"

        @tq.task
        def quick(n):
            return n

        slow = stuck.delay()
        w = tq.start(concurrency=1)
        try:
            until(lambda: slow.state == "started", what="the start")
            fast = [quick.delay(n) for n in range(3)]
            with pytest.raises(dq.JobTimeout) as info:
                slow.result(timeout=10)
            assert "timeout of 0.3 s" in str(info.value)
            assert [j.result(timeout=10) for j in fast] == [0, 1, 2]  # one thread, replaced
            release.set()
            time.sleep(0.1)
            assert slow.state == "dead"  # the late return changed nothing
        finally:
            release.set()
            w.stop(timeout=5)


PROC_APP = '''
import os, time
from diskqueue import TaskQueue, Retry
from diskqueue.tasks import set_progress

tasks = TaskQueue("unused")


@tasks.task
def where():
    return os.getpid()


@tasks.task
def crunch(n):
    total = 0
    for i in range(n):
        total += i * i
    set_progress(1.0)
    return total


@tasks.task(timeout=0.5)
def forever():
    time.sleep(60)


@tasks.task(retries=1, backoff=0.01)
def fails_once(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise Retry(delay=0.01)
    return "second time"


@tasks.task
def crashes():
    os._exit(3)
'''


def test_process_pool_runs_tasks_in_children_and_kills_timed_out_ones(tmp_path, monkeypatch):
    name = write_app(tmp_path, "procapp", PROC_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module(name)
    try:
        tq = mod.tasks
        tq.set_path(tmp_path / "jobs")
        pids = [mod.where.delay() for _ in range(4)]
        crunch = mod.crunch.delay(10_000)
        stuck = mod.forever.delay()
        retried = mod.fails_once.delay(str(tmp_path / "marker"))
        crashed = mod.crashes.delay()
        w = tq.start(concurrency=2, pool="process")
        try:
            with pytest.raises(dq.JobTimeout):
                stuck.result(timeout=30)
            children = {j.result(timeout=30) for j in pids}
            assert os.getpid() not in children and 1 <= len(children) <= 3
            assert crunch.result(timeout=30) == sum(i * i for i in range(10_000))
            assert crunch.progress == 1.0
            assert retried.result(timeout=30) == "second time" and retried.failures == 1
            with pytest.raises(dq.JobFailed) as info:
                crashed.result(timeout=30)
            assert info.value.error_type == "WorkerLost"
            after = mod.where.delay()  # the pool still works after a kill and a crash
            assert after.result(timeout=30) not in (None, os.getpid())
        finally:
            assert w.stop(timeout=10)
            tq.close()
    finally:
        sys.modules.pop(name, None)


def test_process_pool_stop_waits_for_running_jobs(tmp_path, monkeypatch):
    source = PROC_APP + '''

@tasks.task
def nap(secs):
    time.sleep(secs)
    return secs
'''
    name = write_app(tmp_path, "procapp2", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module(name)
    try:
        tq = mod.tasks
        tq.set_path(tmp_path / "jobs")
        job = mod.nap.delay(0.8)
        w = tq.start(concurrency=1, pool="process", app=f"{name}:tasks")
        until(lambda: job.state == "started", timeout=30, what="the start")
        assert w.stop(timeout=10)  # graceful: the running job finished
        assert job.state == "success" and job.result() == 0.8
        tq.close()
    finally:
        sys.modules.pop(name, None)


def test_batched_fetches_go_back_untouched_when_the_worker_stops(tmp_path):
    with dq.TaskQueue(tmp_path / "jobs") as tq:
        @tq.task
        def step(n):
            time.sleep(0.03)

        jobs = tq.enqueue_many("step", [((n,), {}) for n in range(100)])
        w = tq.start(concurrency=2)  # 100 ready: each thread reserves a batch
        until(lambda: w.finished >= 4, what="a few runs")
        assert w.stop(timeout=10)
        states = [tq.job(j.id).info() for j in jobs]
        done = [s for s in states if s["state"] == "success"]
        waiting = [s for s in states if s["state"] == "pending"]
        assert len(done) + len(waiting) == 100 and len(waiting) >= 60
        assert all(s["attempts"] == 0 for s in waiting)  # never started, nothing counted
        stats = tq.stats()["default"]
        assert stats["in_flight"] == 0 and stats["depth"] == len(waiting)
        order = [s["id"] for s in waiting]
        assert [tq.job(j.id).id for j in tq.pending(limit=len(order))] == order  # in order


def test_a_timed_out_thread_gives_back_the_rest_of_its_batch(tmp_path):
    release = threading.Event()
    with dq.TaskQueue(tmp_path / "jobs") as tq:
        @tq.task(timeout=0.3)
        def step(n):
            if n == 0:
                release.wait(20)
            return n

        jobs = tq.enqueue_many("step", [((n,), {}) for n in range(20)])
        w = tq.start(concurrency=1)  # one thread, which reserves a batch
        try:
            with pytest.raises(dq.JobTimeout):
                jobs[0].result(timeout=10)
            assert [j.result(timeout=10) for j in jobs[1:]] == list(range(1, 20))
        finally:
            release.set()
            w.stop(timeout=5)
