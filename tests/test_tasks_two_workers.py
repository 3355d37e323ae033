"""Two worker processes on one directory. The one holding it serves every disk call of
a job the other runs, which costs it more than running a short job itself: it keeps the
jobs whose calls are short, and the other process's worker (``diskq-worker``, as a user
starts it) takes jobs whose calls are long, and any while every thread of the holder is
held up in a long call. Each job returns the pid of the process that ran it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

try:
    from .test_tasks_support import env, until, write_app
except ImportError:
    from test_tasks_support import env, until, write_app

APP = """
import os, time
from diskqueue import TaskQueue

tasks = TaskQueue(os.environ["DQ_TEST_JOBS"])


@tasks.task(result_ttl=600)
def where(i):
    return os.getpid()


@tasks.task(result_ttl=600)
def nap(seconds):
    time.sleep(seconds)
    return os.getpid()
"""


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The task module, loaded here (this process opens the directory first: it holds
    it), and a way to start ``diskq-worker`` on it in another process, which waits
    until that worker runs a job."""
    path = tmp_path / "jobs"
    monkeypatch.setenv("DQ_TEST_JOBS", str(path))
    name = write_app(tmp_path, "twoapp", APP)
    spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tasks = module.tasks
    tasks.stats()
    assert tasks.store.engine().role == "owner"
    started = []

    def other_worker():
        with open(tmp_path / "worker.log", "ab") as log:  # (it logs every job it runs)
            proc = subprocess.Popen(
                [sys.executable, "-m", "diskqueue.cli.worker", str(path), "--app",
                 f"{name}:tasks", "--concurrency", "4"],
                cwd=tmp_path, env=env(DQ_TEST_JOBS=str(path)), stdout=log, stderr=log)
        started.append(proc)
        canary = module.where.delay(-1)
        assert canary.result(timeout=60) == proc.pid
        return proc

    yield module, other_worker
    for proc in started:
        proc.kill()
        proc.wait(30)
    tasks.close()


def _ran_by(jobs, pid) -> int:
    return sum(job.result(timeout=60) == pid for job in jobs)


def _drained(app, enqueue) -> tuple[int, int]:
    """Jobs ``enqueue()`` made, drained by the other process's worker and this one's
    (4 threads each): how many each ran."""
    module, other_worker = app
    other = other_worker()
    here = module.tasks.start(concurrency=4)
    try:
        jobs = enqueue()
        return _ran_by(jobs, other.pid), _ran_by(jobs, os.getpid())
    finally:
        here.stop()


@pytest.mark.timeout(180)
def test_the_holder_keeps_short_jobs_from_another_process_worker(app):
    module = app[0]
    there, here = _drained(app, lambda: [job for k in range(0, 6000, 1000)
                                         for job in module.where.map(range(k, k + 1000))])
    # (a call the machine held up for 10 ms lets the other worker in for a moment)
    assert there <= 300 and here == 6000 - there


@pytest.mark.timeout(180)
def test_another_process_worker_shares_jobs_whose_calls_are_long(app):
    there, here = _drained(app, lambda: app[0].nap.map([0.005] * 400))
    assert there >= 40 and here == 400 - there


@pytest.mark.timeout(180)
def test_short_jobs_go_to_another_process_while_the_holder_threads_are_held_up(app):
    module, other_worker = app
    here = module.tasks.start(concurrency=2)
    try:
        module.where.map(range(200))  # the holder's calls were short so far
        until(lambda: here.finished == 200, timeout=30, what="the short jobs")
        naps = module.nap.map([8.0, 8.0])
        until(lambda: all(job.state == "started" for job in naps), timeout=30,
              what="both threads of the holder in a long call")
        other = other_worker()
        short = module.where.map(range(40))
        assert _ran_by(short, other.pid) == 40
        assert [job.state for job in naps] == ["started", "started"]
    finally:
        here.stop()
