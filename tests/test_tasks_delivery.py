"""Delivery with real processes and real signals: at-least-once under SIGKILL of the
worker mid-drain, and graceful SIGTERM/SIGINT with no job run twice."""

from __future__ import annotations

import signal
import time

import pytest

import diskqueue as dq

try:
    from .test_tasks_support import ends, run_worker, starts, until, worker, write_app
except ImportError:
    from test_tasks_support import ends, run_worker, starts, until, worker, write_app

N = 160


def _enqueue(path, n, secs):
    with dq.TaskQueue(path) as tq:  # a producer that knows the task only by name
        return tq.enqueue_many("work", [((i,), {"secs": secs}) for i in range(n)])


@pytest.mark.timeout(120)
def test_sigkill_mid_drain_loses_nothing_and_reruns_only_running_jobs(tmp_path):
    app = write_app(tmp_path)
    log, path = tmp_path / "log", tmp_path / "jobs"
    _enqueue(path, N, 0.04)

    first = worker(path, f"{app}:tasks", "--concurrency", "4", cwd=tmp_path, log=log)
    until(lambda: len(ends(log)) >= 40, timeout=60, what="40 finished jobs")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    before = starts(log)
    cut_short = {n for n in before if n not in ends(log)}
    assert cut_short, "no job was running at the kill (the test proves nothing)"
    assert len(cut_short) <= 4

    done = run_worker(path, f"{app}:tasks", "--drain", "--concurrency", "4", cwd=tmp_path,
                      log=log, timeout=90)
    assert done.returncode == 0, done.stderr
    after, finished = starts(log), ends(log)
    assert set(finished) == set(range(N)), "a job was lost"
    twice = {n for n, pids in after.items() if len(pids) > 1}
    assert cut_short <= twice  # what was running at the kill ran again...
    assert twice <= set(before) and len(twice) <= 4  # ...and nothing else did
    assert all(len(pids) <= 2 for pids in after.values())
    with dq.TaskQueue(path) as tq:
        stats = tq.stats()["default"]
        assert stats["depth"] == stats["in_flight"] == stats["scheduled"] == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_finishes_running_jobs_and_nothing_runs_twice(tmp_path, sig):
    app = write_app(tmp_path)
    log, path = tmp_path / "log", tmp_path / "jobs"
    jobs = _enqueue(path, 40, 0.15)

    proc = worker(path, f"{app}:tasks", "--concurrency", "4", "--grace", "20", cwd=tmp_path,
                  log=log)
    until(lambda: len(ends(log)) >= 6, timeout=60, what="six finished jobs")
    proc.send_signal(sig)
    assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    first = starts(log)
    assert set(first) == set(ends(log)), "a running job was cut short"
    assert len(first) < 40, "the worker kept fetching after the signal"

    done = run_worker(path, f"{app}:tasks", "--drain", cwd=tmp_path, log=log, timeout=90)
    assert done.returncode == 0, done.stderr
    assert all(len(pids) == 1 for pids in starts(log).values()), "a job ran twice"
    assert set(ends(log)) == set(range(40))
    with dq.TaskQueue(path) as tq:
        assert {tq.job(j.id).state for j in jobs} == {"success"}


@pytest.mark.timeout(120)
def test_jobs_still_running_after_the_grace_period_run_again_next_time(tmp_path):
    app = write_app(tmp_path)
    log, path = tmp_path / "log", tmp_path / "jobs"
    _enqueue(path, 1, 1.5)

    proc = worker(path, f"{app}:tasks", "--grace", "0.2", cwd=tmp_path, log=log)
    until(lambda: starts(log), timeout=60, what="the start")
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 4  # EXIT_UNFINISHED
    assert time.monotonic() - stopped < 1.4  # it did not wait for the job
    assert ends(log) == {}

    done = run_worker(path, f"{app}:tasks", "--drain", cwd=tmp_path, log=log, timeout=90)
    assert done.returncode == 0, done.stderr
    assert len(starts(log)[0]) == 2 and ends(log) == {0: 1}


@pytest.mark.timeout(120)
def test_a_worker_process_runs_jobs_this_process_enqueues_while_it_holds_the_directory(
        tmp_path):
    app = write_app(tmp_path)
    log, path = tmp_path / "log", tmp_path / "jobs"
    with dq.TaskQueue(path) as tq:
        first = tq.enqueue("work", 0)  # this process holds the directory from here on
        proc = worker(path, f"{app}:tasks", "--concurrency", "4", cwd=tmp_path, log=log)
        try:
            assert first.result(timeout=30) == 0
            started = time.monotonic()
            jobs = [tq.enqueue("work", n) for n in range(1, 41)]
            assert [j.result(timeout=30) for j in jobs] == list(range(1, 41))
            assert time.monotonic() - started < 3.0  # fetches do not hold up the rest
            stats = tq.stats()["default"]
            assert stats["done"] == 41 and stats["in_flight"] == 0
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    assert all(len(pids) == 1 for pids in starts(log).values())
