"""Retries with exponential backoff and jitter (timed with an injectable clock),
``Retry(delay=...)``, and the dead-letter set."""

from __future__ import annotations

import random
import time

import pytest

import diskqueue as dq
from diskqueue.tasks.retry import backoff_delay

try:
    from .test_tasks_support import FakeClock, until
except ImportError:
    from test_tasks_support import FakeClock, until


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def tasks(tmp_path, clock):
    tq = dq.TaskQueue(tmp_path / "jobs", clock=clock)
    yield tq
    tq.close()


def test_backoff_doubles_with_jitter_in_the_upper_half():
    rng = random.Random(7)
    for failures, full in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (10, 100.0)):
        delays = [backoff_delay(2.0, failures, 100.0, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 4  # it is jittered


def test_retries_wait_for_the_backoff_on_the_injected_clock(tasks, clock):
    runs = []

    @tasks.task(retries=3, backoff=10, max_backoff=1000)
    def fragile():
        runs.append(clock())
        raise ConnectionError("down")

    job = fragile.delay()
    worker = tasks.start(concurrency=1)
    try:
        for failures in (1, 2, 3):
            until(lambda f=failures: job.failures == f and job.state == "retrying",
                  what=f"failure {failures}")
            full = 10 * 2 ** (failures - 1)
            wait = job.info()["eta"] - clock()
            assert full / 2 <= wait <= full, (failures, wait)
            # real time passes, the clock does not: no new attempt
            worker.scheduler.wake.set()
            until(lambda: worker.scheduler.wake.is_set() is False, what="a scheduler pass")
            assert len(runs) == failures and job.state == "retrying"
            clock.advance(wait - 0.01)
            worker.scheduler.wake.set()
            until(lambda: worker.scheduler.wake.is_set() is False, what="a scheduler pass")
            time.sleep(0.1)  # time for a (wrong) early move to reach a worker thread
            assert len(runs) == failures, "retried before its time"
            clock.advance(0.02)
            until(lambda f=failures: len(runs) == f + 1, what=f"attempt {failures + 1}")
        until(lambda: job.state == "dead", what="dead")
        assert job.attempts == 4 and job.failures == 4
        with pytest.raises(dq.JobFailed) as info:
            job.result(timeout=0)
        assert info.value.error_type == "ConnectionError" and info.value.error == "down"
        assert "raise ConnectionError" in info.value.traceback
    finally:
        worker.stop()


def test_raise_retry_asks_for_a_given_delay(tasks, clock):
    runs = []

    @tasks.task(retries=5)
    def poll():
        runs.append(clock())
        if len(runs) < 3:
            raise dq.Retry(delay=30)
        return len(runs)

    job = poll.delay()
    worker = tasks.start(concurrency=1)
    try:
        for n in (1, 2):
            until(lambda n=n: job.failures == n and job.state == "retrying", what="retrying")
            assert job.info()["eta"] == pytest.approx(clock() + 30)
            assert job.error["type"] == "Retry"
            clock.advance(30)
        assert job.result(timeout=10) == 3
        assert runs[1] - runs[0] == pytest.approx(30) and runs[2] - runs[1] == pytest.approx(30)
    finally:
        worker.stop()


def test_retries_zero_means_dead_on_the_first_failure(tasks):
    @tasks.task(retries=0)
    def once():
        raise ValueError("bad input 42")

    job = once.delay()
    worker = tasks.start()
    try:
        with pytest.raises(dq.JobFailed) as info:
            job.result(timeout=10)
    finally:
        worker.stop()
    assert job.attempts == 1 and job.state == "dead"
    assert "ValueError: bad input 42" in str(info.value)
    assert not isinstance(info.value, dq.JobTimeout)


def test_dead_letters_list_retry_and_purge(tasks):
    allow = set()

    @tasks.task
    def picky(n):
        if n not in allow:
            raise LookupError(f"not allowed: {n}")
        return n

    jobs = [picky.delay(n) for n in range(5)]
    worker = tasks.start(concurrency=2)
    try:
        until(lambda: len(tasks.dead()) == 5, what="five dead jobs")
        dead = tasks.dead()
        assert {j.id for j in dead} == {j.id for j in jobs}
        assert all(j.error["type"] == "LookupError" for j in dead)
        assert tasks.stats()["default"]["dead"] == 5

        allow.update({0, 1, 2})
        assert tasks.retry_dead(jobs[0].id) == 1
        assert jobs[0].result(timeout=10) == 0
        with pytest.raises(ValueError):
            tasks.retry_dead(jobs[0].id)  # it is not dead any more
        with pytest.raises(dq.tasks.UnknownJob):
            tasks.retry_dead("no-such-job")

        assert tasks.purge_dead(jobs[4].id) == 1
        with pytest.raises(dq.tasks.UnknownJob):
            jobs[4].info()
        assert tasks.retry_dead() == 3  # 1, 2 and 3
        assert jobs[1].result(timeout=10) == 1 and jobs[2].result(timeout=10) == 2
        until(lambda: [j.id for j in tasks.dead()] == [jobs[3].id], what="3 dead again")
        assert jobs[3].failures == 1 and jobs[3].attempts == 2
        assert tasks.purge_dead() == 1
        assert tasks.dead() == [] and tasks.stats()["default"]["dead"] == 0
    finally:
        worker.stop()
