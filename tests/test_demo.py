"""The demo: ``python -m diskqueue.demo DIR`` enqueues jobs, SIGKILLs a worker part way,
drains the rest with ``diskq-worker --drain`` and finds every job finished."""

from __future__ import annotations

import os

import pytest

import diskqueue as dq

try:
    from . import faults
except ImportError:
    import faults


@pytest.mark.timeout(120)
def test_demo_reports_nothing_lost(tmp_path):
    path = str(tmp_path / "demo-jobs")
    res = faults.run_module("diskqueue.demo", path, timeout=120)
    assert res.returncode == 0, f"rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    out = res.stdout.replace(os.path.realpath(path), "DIR").replace(path, "DIR")
    assert "killed it with SIGKILL" in out, out
    assert "$ DISKQ_DEMO_DIR=DIR diskq-worker --app diskqueue.demo:tasks --drain" in out, out
    assert "$ diskq stats DIR" in out and "in-flight" in out, out
    assert "nothing lost: 300 of 300 jobs finished" in out, out
    assert "LOST" not in out, out
    # the only tracebacks are the broken task's, on the line of each death (the workers
    # log a dead job's traceback at ERROR): nothing else failed
    deaths = res.stderr.count("(broken) is dead")
    assert 0 < deaths <= 5, res.stderr
    assert res.stderr.count("Traceback (most recent call last)") == deaths, res.stderr
    assert res.stderr.count(" ERROR ") == deaths, res.stderr
    # the demo's claim holds when checked independently
    with dq.TaskQueue(path) as tasks:
        stats = tasks.stats()["default"]
        assert stats["depth"] == stats["scheduled"] == stats["in_flight"] == 0
        assert stats["done"] + stats["dead"] == 300 and stats["dead"] == 5
        assert len(tasks.dead()) == 5


@pytest.mark.timeout(120)
def test_demo_without_a_directory_uses_a_temporary_one(tmp_path):
    res = faults.run_module("diskqueue.demo", timeout=120, env={"TMPDIR": str(tmp_path)})
    assert res.returncode == 0, f"rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    assert "nothing lost" in res.stdout, res.stdout
    assert os.listdir(tmp_path), "the demo did not use a temporary directory"
