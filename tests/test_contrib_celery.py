"""Real ``celery worker`` processes (threads and prefork pools) on a diskqueue directory,
fed by producers in other processes."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("celery")

from celery_support import (  # noqa: E402
    Worker,
    celery,
    done,
    lines,
    produce,
    producer,
    wait_for,
    write_app,
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


@pytest.fixture
def broker(app_dir: Path) -> str:
    return f"diskqueue://{app_dir / 'queue'}"


def test_threads_worker_runs_what_two_producer_processes_send(app_dir: Path,
                                                              broker: str) -> None:
    worker = Worker(app_dir, broker, pool="threads", concurrency=4)
    try:
        worker.wait_ready()
        code = "for i in range(50):\n    record.delay('{tag}%d' % i)\n"
        producers = [producer(app_dir, broker, code.format(tag=tag)) for tag in "ab"]
        for proc in producers:
            assert proc.wait(timeout=60) == 0
        expected = {f"{tag}{i}" for tag in "ab" for i in range(50)}
        wait_for(lambda: set(done(app_dir)) >= expected, 60, "100 tasks to run")
        assert sorted(done(app_dir)) == sorted(expected)  # each exactly once
        # Remote control (a fanout exchange) reaches the worker from another process.
        ping = celery(app_dir, broker, "inspect", "ping", "--timeout", "5")
        assert ping.returncode == 0, ping.stderr
        assert "pong" in ping.stdout and "w1@" in ping.stdout
    finally:
        worker.stop()


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_acks_late_task_runs_again_after_the_worker_is_killed(app_dir: Path, broker: str,
                                                             pool: str) -> None:
    worker = Worker(app_dir, broker, pool=pool, concurrency=2)
    try:
        worker.wait_ready()
        produce(app_dir, broker, "hold.delay('h')\nfor i in range(20):\n    record.delay(i)\n")
        wait_for(lambda: ["start", "h"] in [w[:2] for w in lines(app_dir)], 60,
                 "the held task to start")
    finally:
        worker.kill()
    assert "h" not in done(app_dir)
    (app_dir / "out.txt.release").touch()
    again = Worker(app_dir, broker, pool=pool, concurrency=2, name="w2")
    try:
        again.wait_ready()
        wanted = {"h", *map(str, range(20))}
        wait_for(lambda: set(done(app_dir)) >= wanted, 60, "every task to finish")
    finally:
        again.stop()
    starts = [w for w in lines(app_dir) if w[:2] == ["start", "h"]]
    assert len(starts) == 2 and starts[0][2] != starts[1][2]  # two processes ran it
    assert done(app_dir).count("h") == 1
    assert set(done(app_dir)) == wanted  # nothing lost


def test_countdown_task_runs_after_its_delay_and_others_do_not_wait(app_dir: Path,
                                                                   broker: str) -> None:
    worker = Worker(app_dir, broker)
    try:
        worker.wait_ready()
        sent = float(produce(app_dir, broker, (
            "import time\nsent = time.time()\n"
            "record.apply_async(('late',), countdown=2)\nrecord.delay('now')\n"
            "print(sent)\n")))
        wait_for(lambda: "late" in done(app_dir), 30, "the countdown task")
    finally:
        worker.stop()
    ran = {w[1]: float(w[2]) for w in lines(app_dir)}
    assert ran["late"] >= sent + 2.0
    assert ran["now"] < ran["late"]
    assert done(app_dir) == ["now", "late"]


def test_priorities_run_zero_first_as_on_redis(app_dir: Path, broker: str) -> None:
    produce(app_dir, broker, (
        "for i in range(3):\n"
        "    record.apply_async(('low%d' % i,), priority=9)\n"
        "record.apply_async(('mid',), priority=4)\n"
        "for i in range(3):\n"
        "    urgent.delay('high%d' % i)\n"  # the task's own priority=0
    ))
    worker = Worker(app_dir, broker, concurrency=1)
    try:
        worker.wait_ready()
        wait_for(lambda: len(done(app_dir)) == 7, 60, "7 tasks")
    finally:
        worker.stop()
    assert done(app_dir) == ["high0", "high1", "high2", "mid", "low0", "low1", "low2"]


def test_purge_and_queue_sizes(app_dir: Path, broker: str) -> None:
    size = ("with app.connection() as conn:\n"
            "    print(conn.default_channel.queue_declare('celery', passive=True)"
            ".message_count)\n")
    assert produce(app_dir, broker, "for i in range(5):\n    record.delay(i)\n" + size) == "5\n"
    purged = celery(app_dir, broker, "purge", "--force")
    assert purged.returncode == 0, purged.stderr
    assert "Purged 5 messages" in purged.stdout
    assert produce(app_dir, broker, "record.delay('x')\n" + size) == "1\n"
