"""A job still running when SIGTERM's grace period ends goes back to its queue, and its
record says so: ``pending`` in ``diskq peek`` and ``job.state``, as ``stats`` counts it,
and it runs to its end on the next start."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import diskqueue as dq

try:
    from .test_tasks_support import diskq, run_worker, until, worker, write_app
except ImportError:
    from test_tasks_support import diskq, run_worker, until, worker, write_app

APP = '''
import asyncio, os, time
from diskqueue import TaskQueue

tasks = TaskQueue(os.environ["DQ_TEST_JOBS"])
GO = os.path.join(os.path.dirname(os.environ["DQ_TEST_JOBS"]), "go")


@tasks.task()
def slow(n):
    end = time.monotonic() + 60
    while not os.path.exists(GO) and time.monotonic() < end:
        time.sleep(0.02)
    return n


@tasks.task()
async def aslow(n):
    end = time.monotonic() + 60
    while not os.path.exists(GO) and time.monotonic() < end:
        await asyncio.sleep(0.02)
    return n
'''


def state(path: Path, job_id: str) -> str:
    with dq.TaskQueue(path) as tasks:
        return tasks.job(job_id).state


def sigterm_while_running(jobs: Path, app: str, job_id: str, *args: str, cwd: Path) -> str:
    """Start ``diskq-worker`` on ``jobs``, SIGTERM it once ``job_id`` runs, wait for it
    to exit; returns what it wrote to stderr."""
    proc = worker(jobs, app, *args, cwd=cwd)
    try:
        until(lambda: state(jobs, job_id) == "started", timeout=30, what="the job to start")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


@pytest.mark.parametrize(("pool", "task"),
                         [("thread", "slow"), ("process", "slow"), ("async", "aslow")])
def test_a_job_cut_short_by_sigterm_is_pending_again(tmp_path: Path, pool: str,
                                                     task: str) -> None:
    jobs = tmp_path / "jobs"
    app = write_app(tmp_path, "slowapp", APP) + ":tasks"
    with dq.TaskQueue(jobs) as tasks:
        job_id = tasks.enqueue(task, 7).id
    sigterm_while_running(jobs, app, job_id, "--pool", pool, "--concurrency", "1",
                          "--grace", "0.3", cwd=tmp_path)

    assert state(jobs, job_id) == "pending"
    peek = diskq("peek", str(jobs))
    assert peek.returncode == 0, peek.stderr
    assert f"{job_id}  default  {task}(7)  pending" in peek.stdout
    assert "started" not in peek.stdout
    with dq.TaskQueue(jobs) as tasks:
        assert tasks.stats()["default"]["depth"] == 1
        assert tasks.job(job_id).attempts == 1  # the run cut short counts

    (tmp_path / "go").touch()
    done = run_worker(jobs, app, "--drain", "--pool", pool, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with dq.TaskQueue(jobs) as tasks:
        job = tasks.job(job_id)
        assert (job.state, job.result(timeout=0), job.attempts) == ("success", 7, 2)
