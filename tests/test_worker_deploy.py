"""``diskq-worker`` as it is deployed: every ``--queues`` form in a real worker, the app's
directory as the one source of truth, ``--create``, ``--version``, and logging that fits
the app's own setup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import diskqueue as dq

try:
    from . import faults
    from .test_tasks_support import until, write_app
except ImportError:
    import faults
    from test_tasks_support import until, write_app

APP = '''
import os
from diskqueue import TaskQueue

tasks = TaskQueue(os.environ["DEPLOY_JOBS"])


@tasks.task(queue="high")
def urgent(n):
    with open(os.environ["DEPLOY_LOG"], "a") as f:
        f.write(f"high {n}\\n")


@tasks.task(queue="low")
def later(n):
    with open(os.environ["DEPLOY_LOG"], "a") as f:
        f.write(f"low {n}\\n")
'''

# An app that sets up its own logging: the worker must keep it.
LOGGING_APP = APP + '''
import logging
logging.basicConfig(filename=os.environ["DEPLOY_APPLOG"], level=logging.WARNING,
                    format="APP %(levelname)s %(name)s %(message)s")
'''


def start(tmp_path: Path, *args: str, jobs: Path, app: str = "deployapp",
          timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    env = faults.child_env()
    env.update(DEPLOY_JOBS=str(jobs), DEPLOY_LOG=str(tmp_path / "ran"), **extra)
    return subprocess.run([sys.executable, "-m", "diskqueue.cli.worker", *args], cwd=tmp_path,
                          env=env, text=True, capture_output=True, timeout=timeout)


def enqueue(jobs: Path, high: int, low: int) -> None:
    with dq.TaskQueue(jobs) as tasks:
        for n in range(high):
            tasks.apply("urgent", (n,), queue="high")
        for n in range(low):
            tasks.apply("later", (n,), queue="low")


def ran(tmp_path: Path) -> list[str]:
    log = tmp_path / "ran"
    return log.read_text().split("\n")[:-1] if log.exists() else []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("queues", ["high,low", "high=3,low=1", " low , high ", "high=1,low=0.5"])
def test_every_queues_form_runs_a_real_worker(tmp_path, queues):
    write_app(tmp_path, "deployapp", APP)
    jobs = tmp_path / "jobs"
    enqueue(jobs, 5, 5)
    res = start(tmp_path, "--app", "deployapp:tasks", "--queues", queues, "--drain",
                "--concurrency", "1", jobs=jobs)
    assert res.returncode == 0, res.stderr
    done = ran(tmp_path)
    assert sorted(done) == sorted([f"high {n}" for n in range(5)] + [f"low {n}" for n in range(5)])
    if queues == "high,low":  # strict order, one at a time: every high job before any low
        assert done[:5] == [f"high {n}" for n in range(5)], done


@pytest.mark.timeout(120)
def test_a_queues_list_serves_only_those_queues(tmp_path):
    write_app(tmp_path, "deployapp", APP)
    jobs = tmp_path / "jobs"
    enqueue(jobs, 3, 3)
    worker = subprocess.Popen(
        [sys.executable, "-m", "diskqueue.cli.worker", "--app", "deployapp:tasks",
         "--queues", "high"], cwd=tmp_path, text=True, stderr=subprocess.PIPE,
        env={**faults.child_env(), "DEPLOY_JOBS": str(jobs), "DEPLOY_LOG": str(tmp_path / "ran")})
    try:
        until(lambda: len(ran(tmp_path)) >= 3, timeout=60, what="the high jobs")
    finally:
        worker.terminate()
        assert worker.wait(60) == 0, worker.stderr.read() if worker.stderr else ""
    assert sorted(ran(tmp_path)) == [f"high {n}" for n in range(3)]
    with dq.TaskQueue(jobs) as tasks:
        assert tasks.stats()["low"]["depth"] == 3


@pytest.mark.timeout(120)
def test_without_path_the_worker_serves_the_apps_directory(tmp_path):
    write_app(tmp_path, "deployapp", APP)
    jobs = tmp_path / "jobs"
    enqueue(jobs, 2, 1)
    res = start(tmp_path, "--app", "deployapp:tasks", "--drain", jobs=jobs)
    assert res.returncode == 0, res.stderr
    assert len(ran(tmp_path)) == 3


@pytest.mark.timeout(120)
def test_a_path_that_is_not_the_apps_directory_is_refused_naming_both(tmp_path):
    write_app(tmp_path, "deployapp", APP)
    jobs, other = tmp_path / "jobs", tmp_path / "other"
    enqueue(jobs, 2, 0)
    other.mkdir()
    res = start(tmp_path, str(other), "--app", "deployapp:tasks", "--drain", jobs=jobs)
    assert res.returncode == 2, res.stderr
    assert str(other) in res.stderr and str(jobs) in res.stderr, res.stderr
    assert ran(tmp_path) == [] and os.listdir(other) == []
    same = start(tmp_path, str(jobs) + "/", "--app", "deployapp:tasks", "--drain", jobs=jobs)
    assert same.returncode == 0, same.stderr  # the same directory, spelled differently
    assert len(ran(tmp_path)) == 2


@pytest.mark.timeout(120)
def test_a_missing_directory_is_an_error_unless_create(tmp_path):
    write_app(tmp_path, "deployapp", APP)
    typo = tmp_path / "jbos"
    res = start(tmp_path, "--app", "deployapp:tasks", "--drain", jobs=typo)
    assert res.returncode == 2, res.stderr
    assert str(typo) in res.stderr and "--create" in res.stderr, res.stderr
    assert not typo.exists()
    made = start(tmp_path, "--app", "deployapp:tasks", "--drain", "--create", jobs=typo)
    assert made.returncode == 0, made.stderr
    assert typo.is_dir()


@pytest.mark.parametrize("module", ["diskqueue.cli.worker", "diskqueue.cli"])
def test_both_commands_print_their_version(module):
    res = faults.run_module(module, "--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [res.stdout.split()[0], dq.__version__]


@pytest.mark.timeout(120)
def test_the_apps_own_logging_setup_is_kept(tmp_path):
    write_app(tmp_path, "deployapp", LOGGING_APP)
    jobs, applog = tmp_path / "jobs", tmp_path / "app.log"
    enqueue(jobs, 1, 0)
    res = start(tmp_path, "--app", "deployapp:tasks", "--drain", "--log-level", "info",
                jobs=jobs, DEPLOY_APPLOG=str(applog))
    assert res.returncode == 0, res.stderr
    lines = applog.read_text().splitlines()
    # diskqueue's INFO lines reach the app's handler in the app's format, at the level
    # --log-level set for diskqueue's loggers; the app's root level was left alone
    assert any(line.startswith("APP INFO diskqueue.") for line in lines), lines
    assert res.stderr.strip() == "", res.stderr  # no second handler of the worker's


@pytest.mark.timeout(120)
def test_json_log_lines_when_the_app_sets_up_no_logging(tmp_path):
    write_app(tmp_path, "deployapp", APP)
    jobs = tmp_path / "jobs"
    enqueue(jobs, 1, 0)
    res = start(tmp_path, "--app", "deployapp:tasks", "--drain", "--log-format", "json",
                jobs=jobs)
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
    assert records, res.stderr
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"].startswith("diskqueue") and r["level"] == "INFO" for r in records)


def test_peek_shows_priorities_and_refuses_queue_on_a_plain_directory(tmp_path):
    jobs, plain = tmp_path / "jobs", tmp_path / "plain"
    with dq.TaskQueue(jobs) as tasks:
        tasks.apply("anything", (1,), priority=7)
    shown = faults.run_module("diskqueue.cli", "peek", str(jobs))
    assert shown.returncode == 0, shown.stderr
    assert "priority=7" in shown.stdout, shown.stdout
    with dq.Queue(plain) as q:
        q.enqueue("x")
    refused = faults.run_module("diskqueue.cli", "peek", str(plain), "--queue", "mail")
    assert refused.returncode == 1
    assert "--queue" in refused.stderr and "plain queue" in refused.stderr, refused.stderr
    with dq.Queue(plain) as q:
        assert len(q) == 1
