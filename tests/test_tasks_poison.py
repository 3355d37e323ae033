"""Poison jobs: every way a task can end ends in an outcome (success, retry or dead).

A task that raises ``KeyboardInterrupt``, ``SystemExit``, ``asyncio.CancelledError``,
``GeneratorExit``, or an exception that cannot even describe itself, fails like any
other error: retried with the backoff, then dead, with its type name and a readable
message; no pool thread or event loop dies, nothing stays in flight, ``--drain``
exits. (A task's own ``KeyboardInterrupt`` is a failure of the job, as in Celery and
Dramatiq; a real SIGINT to the worker still stops it gracefully.)
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import diskqueue as dq
from diskqueue.tasks import layout as R

try:
    from .test_tasks_support import run_worker, until, write_app
except ImportError:
    from test_tasks_support import run_worker, until, write_app

pytestmark = pytest.mark.timeout(120)


class Unprintable(Exception):
    """An error whose ``__str__`` and ``__repr__`` both raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


POISONS = {
    "KeyboardInterrupt": lambda: KeyboardInterrupt("from the task"),
    "SystemExit": lambda: SystemExit(3),
    "CancelledError": lambda: asyncio.CancelledError("cancelled by the task"),
    "GeneratorExit": lambda: GeneratorExit("closing"),
    "Unprintable": lambda: Unprintable("hidden"),
}
MESSAGES = {
    "KeyboardInterrupt": "from the task",
    "SystemExit": "3",
    "CancelledError": "cancelled by the task",
    "GeneratorExit": "closing",
}


def _register(tasks: dq.TaskQueue, poison: str, flavor: str, attempts: list[float]) -> None:
    make = POISONS[poison]
    if flavor == "async":
        @tasks.task(name="poison", retries=1, backoff=0.05)
        async def poison_async() -> None:
            attempts.append(time.monotonic())
            await asyncio.sleep(0)
            raise make()
    else:
        @tasks.task(name="poison", retries=1, backoff=0.05)
        def poison_sync() -> None:
            attempts.append(time.monotonic())
            raise make()

    @tasks.task(name="good")
    def good(n: int) -> int:
        return n * 2


def _check_dead(job: dq.tasks.Job, poison: str) -> None:
    assert job.state == "dead"
    assert job.attempts == 2 and job.failures == 2  # retried once with the backoff, then dead
    error = job.error
    assert error is not None and error["type"] == poison
    if poison == "Unprintable":
        assert error["message"] == "<Unprintable object: its __str__ and __repr__ raised>"
    else:
        assert error["message"] == MESSAGES[poison]
    with pytest.raises(dq.JobFailed) as info:
        job.result(timeout=0)
    assert info.value.error_type == poison


@pytest.mark.parametrize("poison", sorted(POISONS))
@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize("pool", ["thread", "async"])
def test_a_poison_job_is_retried_then_dead_and_the_pool_goes_on(tmp_path, pool, flavor,
                                                                  poison):
    tasks = dq.TaskQueue(tmp_path / "jobs")
    attempts: list[float] = []
    _register(tasks, poison, flavor, attempts)
    try:
        job = tasks.enqueue("poison")
        worker = tasks.start(concurrency=2, pool=pool)
        try:
            until(lambda: job.state == "dead", timeout=20, what="the poison job to be dead")
            _check_dead(job, poison)
            assert len(attempts) == 2, "the job ran again without counting a failure"
            # the backoff (at least 25 ms) was waited; due times are whole milliseconds, truncated
            assert attempts[1] - attempts[0] >= 0.024
            ns = R.queue_ns("default")
            assert tasks._engine().in_flight(ns) == 0
            assert tasks.dead() == [job]
            # the pool is whole: every slot still runs jobs
            goods = [tasks.enqueue("good", n) for n in range(8)]
            assert [g.result(timeout=20) for g in goods] == [n * 2 for n in range(8)]
            if pool == "thread":
                alive = [t for t in worker.pool.threads if t.is_alive()]
                assert len(alive) == 2
            else:
                assert worker.pool.thread.is_alive()
            time.sleep(0.3)  # a hot loop would run it again meanwhile
            assert len(attempts) == 2
        finally:
            clean = worker.stop(timeout=10)
        assert clean is True
        assert tasks._engine().in_flight(R.queue_ns("default")) == 0
    finally:
        tasks.close()


@pytest.mark.parametrize("poison", ["KeyboardInterrupt", "SystemExit", "CancelledError"])
def test_an_async_task_with_a_timeout_fails_alone(tmp_path, poison):
    """With a ``timeout`` the coroutine runs in a task of its own (``wait_for``), whose
    KeyboardInterrupt would otherwise be raised out of the event loop."""
    tasks = dq.TaskQueue(tmp_path / "jobs")
    make = POISONS[poison]

    @tasks.task(name="poison", retries=1, backoff=0.05, timeout=5)
    async def poison_async() -> None:
        await asyncio.sleep(0)
        raise make()

    @tasks.task(name="good", timeout=5)
    async def good(n: int) -> int:
        return n

    try:
        job = tasks.enqueue("poison")
        worker = tasks.start(concurrency=2, pool="async")
        try:
            until(lambda: job.state == "dead", timeout=20, what="dead")
            assert job.attempts == 2 and job.error["type"] == poison
            assert worker.pool.thread.is_alive()
            assert tasks.enqueue("good", 5).result(timeout=10) == 5
        finally:
            assert worker.stop(timeout=10) is True
    finally:
        tasks.close()


def test_a_worker_running_poison_jobs_still_stops_on_a_real_signal(tmp_path):
    """The task's KeyboardInterrupt does not stop the worker; the worker's own stop
    request (what SIGINT sets) still does, with a truthful answer."""
    tasks = dq.TaskQueue(tmp_path / "jobs")
    attempts: list[float] = []
    _register(tasks, "KeyboardInterrupt", "sync", attempts)
    gate = threading.Event()

    @tasks.task(name="slow")
    def slow() -> str:
        gate.wait(10)
        return "done"

    try:
        job = tasks.enqueue("poison")
        worker = tasks.start(concurrency=2)
        try:
            until(lambda: job.state == "dead", what="dead")
            assert worker.pool.threads and not worker.stopped
            running = tasks.enqueue("slow")
            until(lambda: running.state == "started", what="slow started")
        finally:
            assert worker.stop(timeout=0.2) is False  # the slow job was cut short
            gate.set()
    finally:
        tasks.close()


APP = '''
import asyncio, os
from diskqueue import TaskQueue

tasks = TaskQueue(os.environ.get("DQ_TEST_JOBS", "unused-task-dir"))


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str")

    def __repr__(self):
        raise RuntimeError("no repr")


KINDS = {
    "KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit,
    "CancelledError": asyncio.CancelledError, "GeneratorExit": GeneratorExit,
    "Unprintable": Unprintable,
}


@tasks.task(retries=1, backoff=0.05)
def poison(kind):
    raise KINDS[kind]("bad")


@tasks.task(retries=1, backoff=0.05)
async def poison_async(kind):
    await asyncio.sleep(0)
    raise KINDS[kind]("bad")


@tasks.task()
def good(n):
    return n
'''


@pytest.mark.parametrize("pool", ["thread", "async", "process"])
def test_drain_exits_with_every_poison_job_dead(tmp_path, pool):
    app = write_app(tmp_path, "poisonapp", APP)
    path = tmp_path / "jobs"
    tasks = dq.TaskQueue(path)
    jobs = []
    for kind in sorted(POISONS):
        jobs.append(tasks.enqueue("poison", kind))
        jobs.append(tasks.enqueue("poison_async", kind))
    goods = [tasks.enqueue("good", n) for n in range(5)]
    tasks.close()

    done = run_worker(path, f"{app}:tasks", "--drain", "--pool", pool, "--concurrency", "3",
                      cwd=tmp_path, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]

    tasks = dq.TaskQueue(path)
    try:
        for job in jobs:
            job = tasks.job(job.id)
            assert job.state == "dead", (job.args, job.state)
            assert job.attempts == 2, (job.args, job.attempts)
            error = job.error
            assert error is not None and error["type"] == job.args[0]
            assert error["message"]  # readable, never empty or missing
        assert [tasks.job(g.id).result(timeout=0) for g in goods] == list(range(5))
        assert tasks._engine().in_flight(R.queue_ns("default")) == 0
    finally:
        tasks.close()
