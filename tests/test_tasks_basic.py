"""TaskQueue basics: registering, enqueueing, Job states and results, bad input, hooks."""

from __future__ import annotations

import threading
import time

import pytest

import diskqueue as dq
from diskqueue.tasks import Middleware, UnknownJob, current_job_id, set_progress
from diskqueue.tasks import layout as R

try:
    from .test_tasks_support import FakeClock, until
except ImportError:
    from test_tasks_support import FakeClock, until


def test_defining_tasks_has_no_side_effect_until_first_use(tmp_path):
    tq = dq.TaskQueue(tmp_path / "jobs")

    @tq.task(retries=3)
    def send(to):
        return to

    assert send("a") == "a"  # calling the task runs it here and now
    assert not (tmp_path / "jobs").exists()
    send.delay("b")
    assert (tmp_path / "jobs").is_dir()
    tq.close()


def test_delay_runs_and_result_returns_the_value(tasks):
    @tasks.task
    def add(a, b):
        return a + b

    job = add.delay(2, 3)
    assert isinstance(job, dq.Job) and isinstance(job.id, str)
    assert job.state == "pending" and job.attempts == 0
    assert (job.task, job.args, job.kwargs, job.queue, job.priority) == ("add", [2, 3], {},
                                                                         "default", 0)
    worker = tasks.start(concurrency=2)
    try:
        assert job.result(timeout=10) == 5
        assert job.state == "success" and job.attempts == 1
        assert job.enqueued_at <= job.started_at <= job.finished_at
        assert job.enqueued_at.tzinfo is not None
    finally:
        assert worker.stop(timeout=10)


def test_enqueue_by_name_without_the_function_and_apply_options(tmp_path):
    producer = dq.TaskQueue(tmp_path / "jobs")  # knows no tasks at all
    job1 = producer.enqueue("greet", "ada", punct="!")
    job2 = producer.apply("greet", ["bob"], {"punct": "?"}, priority=3)
    producer.close()

    consumer = dq.TaskQueue(tmp_path / "jobs")

    @consumer.task
    def greet(name, punct="."):
        return f"hi {name}{punct}"

    worker = consumer.start()
    try:
        assert consumer.job(job1.id).result(timeout=10) == "hi ada!"
        assert consumer.job(job2.id).result(timeout=10) == "hi bob?"
        assert consumer.job(job2.id).priority == 3
    finally:
        worker.stop()
        consumer.close()


def test_result_timeout_raises_job_timeout_while_pending(tasks):
    @tasks.task
    def noop():
        return None

    job = noop.delay()
    started = time.monotonic()
    with pytest.raises(dq.JobTimeout):
        job.result(timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert job.state == "pending"


def test_unencodable_args_raise_type_error_and_write_nothing(tasks):
    @tasks.task
    def take(x):
        return x

    take.delay(1)  # opens the directory
    for bad in (object(), 2**64, complex(1, 2)):  # (a set is stored since codec=)
        with pytest.raises(TypeError):
            take.delay(bad)
    loop = []
    loop.append(loop)
    with pytest.raises(TypeError):
        take.apply([loop])
    with pytest.raises(TypeError):
        tasks.enqueue_many("take", [((1,), {}), ((object(),), {})])  # all or nothing
    eng = tasks._engine()
    assert len(eng.scan_records(R.NS_JOBS)) == 1
    assert tasks.stats()["default"]["depth"] == 1


def test_bad_arguments_are_type_and_value_errors(tasks):
    @tasks.task
    def f(*a):
        return a

    with pytest.raises(TypeError):
        f.apply("not a tuple")
    with pytest.raises(TypeError):
        f.apply((), {1: 2})
    with pytest.raises(TypeError):
        f.apply((), priority="high")
    with pytest.raises(ValueError):
        f.apply((), priority=2**63)
    with pytest.raises(ValueError):
        f.apply((), delay=-1)
    with pytest.raises(TypeError):
        f.apply((), delay=1, eta=None, unique_key=5)
    with pytest.raises(ValueError):
        tasks.task(retries=-1)(lambda: None)
    with pytest.raises(ValueError):
        tasks.task(rate_limit="lots")(lambda: None)
    with pytest.raises(ValueError):
        tasks.task(name="f")(lambda: None)  # the name is taken
    with pytest.raises(ValueError):
        tasks.start(pool="fibers")
    with pytest.raises(ValueError):
        tasks.start(concurrency=0)


def test_unknown_task_goes_dead_with_a_clear_error_and_the_worker_keeps_going(tasks):
    @tasks.task
    def known():
        return "ok"

    ghost = tasks.enqueue("no_such_task", 1)
    good = known.delay()
    worker = tasks.start(concurrency=1)
    try:
        with pytest.raises(dq.JobFailed) as info:
            ghost.result(timeout=10)
        assert info.value.error_type == "UnknownTask"
        assert "no_such_task" in str(info.value) and "known" in info.value.error
        assert ghost.state == "dead" and [j.id for j in tasks.dead()] == [ghost.id]
        assert good.result(timeout=10) == "ok"
    finally:
        worker.stop()


def test_enqueue_many_and_map_are_one_batch_each(tasks):
    seen = []

    @tasks.task
    def rec(x, y=0):
        seen.append((x, y))

    jobs = tasks.enqueue_many("rec", [((1,), {"y": 2}), ((3,), {})])
    jobs += rec.map([4, (5, 6)])
    jobs += tasks.enqueue_many("rec", [(7, 8), [9], 10])  # positional args, or one arg
    assert len(jobs) == 7 and tasks.stats()["default"]["depth"] == 7
    worker = tasks.start(concurrency=1)
    try:
        for job in jobs:
            job.result(timeout=10)
    finally:
        worker.stop()
    assert seen == [(1, 2), (3, 0), (4, 0), (5, 6), (7, 8), (9, 0), (10, 0)]


def test_progress_is_visible_while_the_task_runs(tasks):
    gate = threading.Event()
    ids = []

    @tasks.task
    def long():
        ids.append(current_job_id())
        set_progress({"done": 1, "of": 2})
        gate.wait(10)
        set_progress(1.0)
        return "done"

    job = long.delay()
    worker = tasks.start(concurrency=1)
    try:
        until(lambda: job.progress == {"done": 1, "of": 2}, what="progress")
        assert job.state == "started"
        gate.set()
        assert job.result(timeout=10) == "done"
        assert ids == [job.id]
    finally:
        worker.stop()
    with pytest.raises(RuntimeError):
        set_progress(0.5)  # not inside a task


def test_results_are_kept_for_result_ttl(tmp_path):
    clock = FakeClock()
    tq = dq.TaskQueue(tmp_path / "jobs", clock=clock)

    @tq.task(result_ttl=60)
    def short():
        return 1

    @tq.task(result_ttl=0)
    def none():
        return 2

    @tq.task(result_ttl=None)
    def forever():
        return 3

    a, b, c = short.delay(), none.delay(), forever.delay()
    worker = tq.start()
    try:
        assert a.result(timeout=10) == 1 and c.result(timeout=10) == 3
        until(lambda: tq._read_job(b.id) is None, what="the ttl=0 record to go")
        with pytest.raises(UnknownJob):
            b.result(timeout=1)
        clock.advance(61)
        worker.scheduler.expire_results(clock())
        with pytest.raises(UnknownJob):
            a.result()
        assert c.result() == 3
    finally:
        worker.stop()
        tq.close()


def test_middleware_hooks_see_every_step(tasks):
    calls = []

    class Recorder(Middleware):
        def before_enqueue(self, job):
            calls.append(("before_enqueue", job.task))

        def after_enqueue(self, job):
            calls.append(("after_enqueue", job.task))

        def before_run(self, job):
            calls.append(("before_run", job.task))

        def after_run(self, job, result=None, error=None):
            calls.append(("after_run", job.task, result, type(error).__name__))

        def on_retry(self, job, error, delay):
            calls.append(("on_retry", job.task, str(error)))

        def on_dead(self, job, error):
            calls.append(("on_dead", job.task, str(error)))

    class Veto:
        def before_enqueue(self, job):
            if job.args == ["forbidden"]:
                raise PermissionError("no")

    tasks.add_middleware(Recorder())
    tasks.add_middleware(Veto())

    @tasks.task
    def ok(x):
        return x * 2

    @tasks.task(retries=1, backoff=0.01)
    def bad():
        raise KeyError("k")

    with pytest.raises(PermissionError):
        ok.delay("forbidden")
    j1, j2 = ok.delay(2), bad.delay()
    worker = tasks.start(concurrency=1)
    try:
        assert j1.result(timeout=10) == 4
        with pytest.raises(dq.JobFailed):
            j2.result(timeout=10)
    finally:
        worker.stop()
    assert ("after_run", "ok", 4, "NoneType") in calls
    assert calls.count(("before_run", "bad")) == 2
    assert ("on_retry", "bad", "'k'") in calls and ("on_dead", "bad", "'k'") in calls
    assert calls.count(("before_enqueue", "ok")) == 2  # the vetoed one, then j1
    assert calls.count(("after_enqueue", "ok")) == 1


def test_closed_task_queue_refuses(tmp_path):
    with dq.TaskQueue(tmp_path / "jobs") as tq:
        @tq.task
        def f():
            return 1

        f.delay()
    with pytest.raises(dq.Closed):
        f.delay()


def test_a_queue_directory_is_not_a_task_directory(tmp_path):
    with dq.Queue(tmp_path / "q") as q:
        q.enqueue(1)
    tq = dq.TaskQueue(tmp_path / "q")
    with pytest.raises(dq.IncompatibleType):
        tq.enqueue("x")
    tq.close()


def test_stats_counts_and_latency(tasks):
    @tasks.task(retries=1, backoff=0.01)
    def maybe(fail):
        if fail:
            raise RuntimeError("asked to")

    jobs = [maybe.delay(i % 4 == 0) for i in range(20)]
    scheduled = maybe.apply((False,), delay=3600)
    worker = tasks.start(concurrency=2)
    try:
        for job in jobs:
            try:
                job.result(timeout=10)
            except dq.JobFailed:
                pass
        stats = tasks.stats()["default"]
    finally:
        worker.stop()
    assert stats["done"] == 15 and stats["dead"] == 5
    assert stats["failed"] == 10 and stats["retried"] == 5
    assert stats["scheduled"] == 1 and stats["depth"] == 0 and stats["in_flight"] == 0
    assert 0 < stats["latency_p50_ms"] <= stats["latency_p99_ms"]
    assert scheduled.state == "scheduled"
    again = tasks.stats()["default"]  # the counts were stored when the worker stopped
    assert again["done"] == 15 and again["latency_p50_ms"] == stats["latency_p50_ms"]
