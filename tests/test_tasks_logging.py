"""What a real ``diskq-worker`` logs about jobs: at INFO one line per start and per
outcome (task, job id, attempt, queue, duration, also as JSON fields), a failure's
line with its traceback at WARNING (retried) or ERROR (dead), nothing about a job before
"worker started", and SIGTERM with its grace period."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import diskqueue as dq

try:
    from .test_tasks_requeue_state import sigterm_while_running
    from .test_tasks_support import run_worker, write_app
except ImportError:
    from test_tasks_requeue_state import sigterm_while_running
    from test_tasks_support import run_worker, write_app

APP = '''
import os, time
from diskqueue import TaskQueue

tasks = TaskQueue(os.environ["DQ_TEST_JOBS"])


@tasks.task()
def slow():
    time.sleep(30)


@tasks.task(queue="mail")
def ok(n):
    time.sleep(0.05)
    return n


@tasks.task(retries=1, backoff=0.01)
def broken(n):
    raise ValueError(f"broken {n}")
'''


def drain(tmp_path: Path, *args: str) -> tuple[str, str, str]:
    """Enqueue a job of ``ok`` and one of ``broken``, drain them with ``diskq-worker
    ARGS``; returns their ids and the worker's stderr."""
    jobs = tmp_path / "jobs"
    with dq.TaskQueue(jobs) as tasks:
        ok_id, broken_id = tasks.apply("ok", (1,), queue="mail").id, tasks.enqueue("broken", 2).id
    app = write_app(tmp_path, "logapp", APP) + ":tasks"
    done = run_worker(jobs, app, "--drain", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return ok_id, broken_id, done.stderr


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_text_lines_per_job_with_tracebacks(tmp_path: Path, pool: str) -> None:
    ok_id, broken_id, err = drain(tmp_path, "--pool", pool, "--concurrency", "1")
    lines = err.splitlines()
    first_job_line = next(i for i, line in enumerate(lines) if " job " in line)
    assert any("worker started" in line for line in lines[:first_job_line])

    def one(pattern: str) -> str:
        found = [line for line in lines if re.search(pattern, line)]
        assert len(found) == 1, (pattern, err)
        return found[0]

    one(rf"INFO diskqueue.worker: job {ok_id} \(ok\) started: attempt 1, queue mail$")
    one(rf"INFO diskqueue.worker: job {ok_id} \(ok\) succeeded in 0\.\d+ s: attempt 1, "
        r"queue mail$")
    one(rf"INFO diskqueue.worker: job {broken_id} \(broken\) started: attempt 1, "
        r"queue default$")
    one(rf"INFO diskqueue.worker: job {broken_id} \(broken\) started: attempt 2, ")
    retry = lines.index(one(rf"WARNING diskqueue.worker: job {broken_id} \(broken\) failed "
                            r"in [\d.]+ s: attempt 1, queue default: ValueError: broken 2; "
                            r"retry in [\d.]+ s$"))
    dead = lines.index(one(rf"ERROR diskqueue.worker: job {broken_id} \(broken\) is dead "
                           r"after [\d.]+ s: attempt 2, queue default: ValueError: "
                           r"broken 2$"))
    for at in (retry, dead):  # each failure line is followed by its traceback
        assert lines[at + 1] == "Traceback (most recent call last):", err
        assert 'raise ValueError(f"broken {n}")' in "\n".join(lines[at:at + 12])
    one(r"INFO diskqueue.worker: no job left: stopping; the running jobs get up to 30 s")


def test_json_lines_carry_the_job_fields(tmp_path: Path) -> None:
    ok_id, broken_id, err = drain(tmp_path, "--log-format", "json")
    records = [json.loads(line) for line in err.splitlines()]
    about = [r for r in records if "job_id" in r]
    assert {(r["job_id"], r["task"], r["queue"]) for r in about} == {
        (ok_id, "ok", "mail"), (broken_id, "broken", "default")}
    succeeded = [r for r in about if "succeeded" in r["message"]]
    assert len(succeeded) == 1 and succeeded[0]["attempt"] == 1
    assert 0.05 <= succeeded[0]["duration"] < 5
    failed = [r for r in about if r["level"] in ("WARNING", "ERROR")]
    assert [(r["level"], r["attempt"]) for r in failed] == [("WARNING", 1), ("ERROR", 2)]
    for r in failed:
        assert "ValueError: broken 2" in r["traceback"] and r["duration"] >= 0
    starts = [r for r in about if "started" in r["message"]]
    assert sorted((r["task"], r["attempt"]) for r in starts) == [
        ("broken", 1), ("broken", 2), ("ok", 1)]
    assert all("duration" not in r for r in starts)


def test_warning_level_leaves_out_the_job_lines(tmp_path: Path) -> None:
    _, broken_id, err = drain(tmp_path, "--log-level", "warning")
    assert "started" not in err and "succeeded" not in err
    assert f"job {broken_id} (broken) is dead" in err  # failures still show


def test_sigterm_and_the_grace_period_are_logged(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    with dq.TaskQueue(jobs) as tasks:
        job_id = tasks.enqueue("slow").id
    app = write_app(tmp_path, "logapp", APP) + ":tasks"
    err = sigterm_while_running(jobs, app, job_id, "--grace", "0.5", cwd=tmp_path)
    assert ("INFO diskqueue.worker: received SIGTERM: stopping; the running jobs get up "
            "to 0.5 s (the grace period), then go back to their queue; a second signal "
            "stops the wait") in err
    assert f"job {job_id} (slow) was still running at the end of the grace period" in err
    assert "worker stopped; 1 jobs were cut short" in err
