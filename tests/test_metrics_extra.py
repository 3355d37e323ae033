"""Without ``prometheus_client`` the worker still runs, and asking for metrics says
which extra to install. Each case runs in a child where the module cannot be imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diskqueue import TaskQueue

try:
    from .test_tasks_support import env, write_app
except ImportError:
    from test_tasks_support import env, write_app

INSTALL = "pip install 'diskqueue[metrics]'"
BLOCKED = "import sys; sys.modules['prometheus_client'] = None\n"  # import raises ImportError


def run_blocked(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED + code, *args], cwd=cwd,
                          env=env(DQ_TEST_JOBS=str(cwd / "jobs")), text=True,
                          capture_output=True, timeout=60)


WORKER = "from diskqueue.cli.worker import main; sys.exit(main(sys.argv[1:]))"
ADMIN = "from diskqueue.cli.admin import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.timeout(60)
def test_worker_without_the_extra(tmp_path):
    app = write_app(tmp_path)
    path = tmp_path / "jobs"
    with TaskQueue(path) as producer:
        for i in range(3):
            producer.enqueue("work", i)
    asked = run_blocked(WORKER, str(path), "--app", f"{app}:tasks", "--metrics-port", "0",
                        "--drain", cwd=tmp_path)
    assert asked.returncode == 2
    assert INSTALL in asked.stderr and "Traceback" not in asked.stderr
    assert "--metrics-port" in asked.stderr
    with TaskQueue(path) as check:
        assert check.stats()["default"]["depth"] == 3  # nothing ran, nothing changed

    plain = run_blocked(WORKER, str(path), "--app", f"{app}:tasks", "--drain",
                        "--log-level", "warning", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    with TaskQueue(path) as check:
        assert check.stats()["default"]["done"] == 3


@pytest.mark.timeout(60)
def test_start_and_diskq_metrics_without_the_extra(tmp_path):
    code = """
import diskqueue as dq
from diskqueue.metrics import MetricsUnavailable
tasks = dq.TaskQueue(sys.argv[1])
try:
    tasks.start(metrics_port=0)
except MetricsUnavailable as exc:
    assert isinstance(exc, dq.DiskQueueError) and isinstance(exc, ImportError)
    assert not tasks._workers, "no worker may be left running"
    print(exc)
tasks.close()
"""
    started = run_blocked(code, str(tmp_path / "jobs"), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert INSTALL in started.stdout

    (tmp_path / "q").mkdir()
    served = run_blocked(ADMIN, "metrics", str(tmp_path / "q"), "--port", "0", cwd=tmp_path)
    assert served.returncode == 1
    assert INSTALL in served.stderr and "Traceback" not in served.stderr
