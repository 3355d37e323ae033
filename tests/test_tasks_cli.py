"""``diskq-worker`` and the task side of ``diskq``, end to end in real processes."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

import diskqueue as dq
from diskqueue.cli import worker as worker_cli

try:
    from . import faults
    from .test_tasks_support import diskq, ends, env, run_worker, write_app
except ImportError:
    import faults
    from test_tasks_support import diskq, ends, env, run_worker, write_app

PRODUCER = """
import sys
from diskqueue import TaskQueue
tasks = TaskQueue(sys.argv[1])
for i in range(int(sys.argv[2])):
    tasks.enqueue("work", i)
tasks.enqueue("flaky", 999)
tasks.enqueue("no_such_task", 1)
tasks.apply("work", (1000,), delay=0.5)
tasks.close()
print("enqueued")
"""


@pytest.mark.timeout(120)
def test_drain_runs_what_another_process_enqueued_while_no_worker_ran(tmp_path):
    app = write_app(tmp_path)
    log, path = tmp_path / "log", tmp_path / "jobs"
    made = faults.run_py(PRODUCER, str(path), "50")
    assert made.returncode == 0 and "enqueued" in made.stdout, made.stderr

    done = run_worker(path, f"{app}:tasks", "--drain", "--log-level", "warning",
                      cwd=tmp_path, log=log)
    assert done.returncode == 0, done.stderr
    # the only tracebacks are the failing task's own, one per failed run (each failure's
    # log line carries it): the worker itself never crashed
    runs = done.stderr.count("(flaky) failed") + done.stderr.count("(flaky) is dead")
    assert runs == 3 and done.stderr.count("Traceback (most recent call last)") == runs
    assert "no_such_task" in done.stderr  # logged as dead, and the worker kept going
    assert set(ends(log)) == set(range(50)) | {1000}

    stats = diskq("stats", str(path))
    assert stats.returncode == 0, stats.stderr
    header, row = stats.stdout.splitlines()[:2]
    assert header.split()[:7] == ["queue", "depth", "scheduled", "in-flight", "dead", "done",
                                  "failed"]
    assert row.split()[:7] == ["default", "0", "0", "0", "2", "51", "4"]
    as_json = json.loads(diskq("stats", str(path), "--json").stdout)
    assert as_json["default"]["done"] == 51 and as_json["default"]["dead"] == 2
    assert as_json["default"]["latency_p99_ms"] is not None

    dead = diskq("dead", str(path))
    assert dead.returncode == 0
    assert "UnknownTask" in dead.stdout and "ValueError: flaky 999" in dead.stdout
    dead_json = json.loads(diskq("dead", str(path), "--json", "--traceback").stdout)
    assert {d["task"] for d in dead_json} == {"flaky", "no_such_task"}
    flaky_id = next(d["id"] for d in dead_json if d["task"] == "flaky")

    assert diskq("retry", str(path)).returncode == 2  # JOB_ID or --all is required
    retried = diskq("retry", str(path), flaky_id)
    assert retried.returncode == 0 and "put back 1 dead job" in retried.stdout
    peek = diskq("peek", str(path))
    assert peek.returncode == 0 and flaky_id in peek.stdout and "flaky(999)" in peek.stdout
    peek_json = json.loads(diskq("peek", str(path), "--json", "-n", "5").stdout)
    assert [j["id"] for j in peek_json["default"]] == [flaky_id]
    assert diskq("retry", str(path), "nope").returncode == 1
    purged = diskq("purge", str(path), "--all", "--json")
    assert json.loads(purged.stdout) == {"purge": 1}
    assert "no dead jobs" in diskq("dead", str(path)).stdout


@pytest.mark.timeout(120)
def test_drain_on_a_terminal_shows_a_progress_bar(tmp_path):
    app = write_app(tmp_path)
    path = tmp_path / "jobs"
    with dq.TaskQueue(path) as tq:
        tq.enqueue_many("work", [((i,), {}) for i in range(30)])
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "diskqueue.cli.worker", str(path), "--app", f"{app}:tasks",
         "--drain", "--log-level", "error"],
        cwd=tmp_path, env=env(DQ_TEST_JOBS=str(path)), stdout=subprocess.DEVNULL, stderr=follower,
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(60) == 0
    os.close(leader)
    text = out.decode(errors="replace")
    assert "draining" in text and "30/30" in text, text


def test_an_app_that_fails_to_import_exits_3_with_the_import_error(tmp_path):
    write_app(tmp_path, "brokenapp", "import os\nimport no_such_module_here\n")
    res = run_worker(tmp_path / "jobs", "brokenapp:tasks", cwd=tmp_path)
    assert res.returncode == worker_cli.EXIT_APP == 3
    assert "No module named 'no_such_module_here'" in res.stderr
    assert res.stderr.count("\n") == 1  # one line, no traceback
    assert not (tmp_path / "jobs").exists()

    write_app(tmp_path, "notapp", "tasks = 42\n")
    res = run_worker(tmp_path / "jobs", "notapp:tasks", cwd=tmp_path)
    assert res.returncode == 3 and "not a diskqueue TaskQueue" in res.stderr
    res = run_worker(tmp_path / "jobs", "notapp:missing", cwd=tmp_path)
    assert res.returncode == 3 and "no attribute" in res.stderr


def test_bad_usage_exits_2(tmp_path, capsys):
    for argv in (["p", "--app", "m:a", "--concurrency", "0"],
                 ["p", "--app", "nocolon"],
                 ["p", "--app", "m:a", "--pool", "fibers"],
                 ["p", "--app", "m:a", "--queues", "a=1,b"],
                 ["p", "--app", "m:a", "--grace", "-1"],
                 ["p"]):
        try:
            code = worker_cli.main(argv)
        except SystemExit as exc:
            code = exc.code
        assert code == worker_cli.EXIT_USAGE, argv
    assert "usage: diskq-worker" in capsys.readouterr().err


def test_help_has_examples_and_every_option():
    res = faults.run_module("diskqueue.cli.worker", "--help")
    assert res.returncode == 0
    assert "examples:" in res.stdout and "--drain" in res.stdout
    for option in ("--app", "--concurrency", "--pool", "--queues", "--grace", "--drain",
                   "--log-level"):
        assert option in res.stdout


def test_queues_option_parses_strict_and_weighted():
    assert worker_cli._queues("a,b") == ["a", "b"]  # strict order: the worker takes a list
    assert worker_cli._queues("a=3, b=1") == {"a": 3.0, "b": 1.0}
    assert worker_cli._queues(None) is None
    for bad in (",", "a=x", "a=0", "a=1,b"):
        with pytest.raises(ValueError):
            worker_cli._queues(bad)


def test_diskq_on_a_plain_queue_keeps_its_old_output_and_refuses_dead(tmp_path):
    with dq.Queue(tmp_path / "q") as q:
        q.enqueue_many(["a", {"b": 1}])
    stats = diskq("stats", str(tmp_path / "q"))
    assert stats.stdout.strip() == "(default): 2 ready, 0 reserved"
    peek = diskq("peek", str(tmp_path / "q"))
    assert peek.returncode == 0 and '"a"' in peek.stdout and '{"b": 1}' in peek.stdout
    dead = diskq("dead", str(tmp_path / "q"))
    assert dead.returncode == 1 and "not a task directory" in dead.stderr
