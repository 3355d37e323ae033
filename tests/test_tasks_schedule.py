"""Delayed jobs (``delay=``/``eta=``), periodic jobs (every N seconds, cron), the cron
parser, and both across a restart of the worker process."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

import pytest

import diskqueue as dq
from diskqueue.tasks.cron import Cron

try:
    from .test_tasks_support import FakeClock, until, worker, write_app
except ImportError:
    from test_tasks_support import FakeClock, until, worker, write_app


def test_cron_expressions():
    base = dt.datetime(2026, 3, 2, 10, 7, 30)  # a Monday
    t = base.timestamp()

    def nxt(expr, start=t):
        return dt.datetime.fromtimestamp(Cron(expr).next_after(start))

    assert nxt("*/5 * * * *") == dt.datetime(2026, 3, 2, 10, 10)
    assert nxt("0 9 * * mon-fri") == dt.datetime(2026, 3, 3, 9, 0)
    assert nxt("30 4 1,15 * *") == dt.datetime(2026, 3, 15, 4, 30)
    assert nxt("0 0 1 jan *") == dt.datetime(2027, 1, 1, 0, 0)
    assert nxt("@hourly") == dt.datetime(2026, 3, 2, 11, 0)
    assert nxt("0 12 * * 0") == dt.datetime(2026, 3, 8, 12, 0)  # Sunday (0 or 7)
    assert nxt("0 12 * * 7") == dt.datetime(2026, 3, 8, 12, 0)
    assert nxt("0 0 13 * fri") == dt.datetime(2026, 3, 6, 0, 0)  # day OR weekday
    assert nxt("0 0 29 2 *") == dt.datetime(2028, 2, 29, 0, 0)
    for bad in ("* * * *", "60 * * * *", "* * * * mon-", "*/0 * * * *", "0 0 30 2 *", "x"):
        with pytest.raises(ValueError):
            Cron(bad)


def test_delayed_job_starts_within_a_second_of_its_time(tmp_path):
    tq = dq.TaskQueue(tmp_path / "jobs")
    started = {}

    @tq.task
    def ping(name):
        started[name] = time.time()

    worker = tq.start()
    try:
        t0 = time.time()
        a = ping.apply(("delay",), delay=0.6)
        b = ping.apply(("eta",), eta=dt.datetime.now(dt.timezone.utc)
                       + dt.timedelta(seconds=0.8))
        c = ping.apply(("naive eta",), eta=dt.datetime.now() + dt.timedelta(seconds=0.4))
        assert a.state == "scheduled" and a.eta is not None
        assert [j.id for j in tq.scheduled()] == [c.id, a.id, b.id]
        for job in (a, b, c):
            job.result(timeout=10)
        assert 0.6 <= started["delay"] - t0 < 1.6
        assert 0.8 <= started["eta"] - t0 < 1.8
        assert 0.4 <= started["naive eta"] - t0 < 1.4
        assert a.state == "success"
    finally:
        worker.stop()
        tq.close()


def test_delayed_job_survives_the_worker_being_closed_and_reopened(tmp_path):
    clock = FakeClock()
    tq = dq.TaskQueue(tmp_path / "jobs", clock=clock)

    @tq.task
    def later():
        return clock()

    job = later.apply(delay=100)
    w = tq.start()
    clock.advance(50)
    time.sleep(0.1)
    assert w.stop(timeout=5)
    tq.close()

    tq2 = dq.TaskQueue(tmp_path / "jobs", clock=clock)
    tq2.task(later.fn, name="later")
    job = tq2.job(job.id)
    assert job.state == "scheduled"
    w2 = tq2.start()
    try:
        time.sleep(0.2)
        assert job.state == "scheduled"
        clock.advance(50)
        assert job.result(timeout=10) == clock()
    finally:
        w2.stop()
        tq2.close()


def test_periodic_every_ticks_once_per_tick_across_restarts(tmp_path):
    clock = FakeClock(1_000_000.2)
    ran = []

    def make():
        tq = dq.TaskQueue(tmp_path / "jobs", clock=clock)

        @tq.periodic(every=10)
        def beat():
            ran.append(clock())

        return tq

    tq = make()
    w = tq.start()
    try:
        time.sleep(0.3)
        assert ran == []  # the first start records a baseline: no run for past ticks
        clock.advance(10)  # the tick at 1_000_010
        until(lambda: len(ran) == 1, what="the first tick")
        time.sleep(0.3)
        assert len(ran) == 1
    finally:
        w.stop()
        tq.close()

    for _ in range(2):  # restarts within the same tick period enqueue nothing
        tq = make()
        w = tq.start()
        time.sleep(0.3)
        w.stop()
        tq.close()
    assert len(ran) == 1

    clock.advance(35)  # ticks at ...020, ...030 and ...040 were missed: one run
    tq = make()
    w = tq.start()
    try:
        until(lambda: len(ran) == 2, what="the catch-up run")
        time.sleep(0.3)
        assert len(ran) == 2
        jobs = [dq.Job(tq, j.id) for j in tq.pending()]
        assert jobs == []
        clock.advance(10)
        until(lambda: len(ran) == 3, what="the next tick")
    finally:
        w.stop()
        tq.close()


def test_periodic_cron_and_every_run_on_time_in_real_time(tmp_path):
    tq = dq.TaskQueue(tmp_path / "jobs")
    beats = []

    @tq.periodic(every=dt.timedelta(seconds=0.5))
    def beat():
        beats.append(time.time())

    @tq.periodic(cron="* * * * *")
    def minutely():
        return None

    @tq.periodic("@hourly")  # a string is a cron expression
    def hourly():
        return None

    assert hourly.periodic.cron is not None and minutely.periodic.every is None

    with pytest.raises(TypeError):
        tq.periodic()(lambda: None)
    with pytest.raises(ValueError):
        tq.periodic(every=0)(lambda: None)

    w = tq.start()
    try:
        until(lambda: len(beats) >= 3, what="three beats")
    finally:
        w.stop()
        tq.close()
    for t in beats:
        offset = t % 0.5
        assert offset < 0.45, f"ran {offset:.3f} s after its tick"


PERIODIC_APP = '''
import os, time
from diskqueue import TaskQueue
from diskqueue.tasks import current_job_id

tasks = TaskQueue(os.environ["DQ_TEST_JOBS"])
LOG = os.environ["DQ_TEST_LOG"]


def note(text):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, (text + "\\n").encode())
    os.close(fd)


@tasks.periodic(every=0.5)
def beat():
    tick = tasks.job(current_job_id()).info()["tick"]
    note(f"beat {tick} {current_job_id()} {time.time()}")


@tasks.task()
def later(tag):
    note(f"later {tag} {time.time()}")
'''


def test_delayed_and_periodic_jobs_across_a_sigkilled_worker(tmp_path):
    app = write_app(tmp_path, "periodicapp", PERIODIC_APP)
    log = tmp_path / "log"
    path = tmp_path / "jobs"
    os.environ["DQ_TEST_LOG"] = str(log)
    os.environ["DQ_TEST_JOBS"] = str(path)
    try:
        import importlib
        import sys

        sys.path.insert(0, str(tmp_path))
        mod = importlib.import_module(app)
        due = time.time() + 2.5
        mod.later.apply(("x",), delay=2.5)
        mod.tasks.close()
    finally:
        os.environ.pop("DQ_TEST_LOG", None)
        os.environ.pop("DQ_TEST_JOBS", None)
        sys.path.remove(str(tmp_path))

    proc = worker(path, f"{app}:tasks", cwd=tmp_path, log=log)
    until(lambda: log.exists() and log.read_text().count("beat") >= 2, timeout=20,
          what="two beats")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(max(0.0, due + 0.3 - time.time()))  # the delayed job fell due while down
    assert "later" not in log.read_text()

    restarted = time.time()
    proc = worker(path, f"{app}:tasks", cwd=tmp_path, log=log)
    try:
        until(lambda: "later" in log.read_text(), timeout=20, what="the delayed job")
        ran = float(log.read_text().split("later x ")[1].split()[0])
        assert ran - max(restarted, due) < 1.0 + 1.0  # within a second (+ process start)
        until(lambda: log.read_text().count("beat") >= 5, timeout=20, what="more beats")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    ticks: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        words = line.split()
        if words[0] == "beat":
            ticks.setdefault(words[1], set()).add(words[2])
    assert all(len(jobs) == 1 for jobs in ticks.values()), ticks  # one job per tick
