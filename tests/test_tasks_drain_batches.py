"""A worker's threads take jobs in batches and mark the next job of a batch started in
the write that stores the outcome of the one before. A SIGKILL mid-drain must still
lose nothing, rerun only the jobs that were running, and count no attempt for a job
that was taken ahead but not started."""

from __future__ import annotations

import signal

import pytest

import diskqueue as dq

try:
    from .test_tasks_support import ends, run_worker, starts, until, worker, write_app
except ImportError:
    from test_tasks_support import ends, run_worker, starts, until, worker, write_app

N = 400
THREADS = 4


def _in_flight(path) -> int:
    with dq.TaskQueue(path) as tq:  # a client of the worker's process
        return int(tq.stats()["default"]["in_flight"])


@pytest.mark.timeout(150)
def test_sigkill_with_batches_taken_ahead_reruns_only_running_jobs(tmp_path):
    app = write_app(tmp_path)
    log, path = tmp_path / "log", tmp_path / "jobs"
    ids = enqueue_work(path)
    before, cut_short = kill_mid_drain(path, app, tmp_path, log)

    with dq.TaskQueue(path) as tq:  # what the kill left on disk
        running = left_by_kill(tq, ids, before, cut_short)

    done = run_worker(path, f"{app}:tasks", "--drain", "--concurrency", str(THREADS),
                      cwd=tmp_path, log=log, timeout=120)
    assert done.returncode == 0, done.stderr
    with dq.TaskQueue(path) as tq:
        rerun_once(tq, ids, log, running, running - set(before))


def enqueue_work(path) -> list[str]:
    """Enqueue ``N`` jobs of 20 ms; their ids."""
    with dq.TaskQueue(path) as tq:
        return [job.id for job in tq.enqueue_many(
            "work", [((i,), {"secs": 0.02}) for i in range(N)])]


def kill_mid_drain(path, app: str, cwd, log) -> tuple[dict[int, list[int]], set[int]]:
    """Start a worker on ``path``, SIGKILL it once jobs ran and more are in flight than
    it has threads (taken ahead); returns the jobs that started and those that did not
    end."""
    first = worker(path, f"{app}:tasks", "--concurrency", str(THREADS), cwd=cwd, log=log)
    try:
        until(lambda: len(ends(log)) >= 40, timeout=60, what="40 finished jobs")
        # more jobs in flight than threads: jobs were taken ahead, in batches
        until(lambda: _in_flight(path) > THREADS, timeout=30, what="jobs taken ahead")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    before, finished_before = starts(log), ends(log)
    cut_short = {n for n in before if n not in finished_before}
    assert cut_short, "no job was running at the kill (the test proves nothing)"
    return before, cut_short


def left_by_kill(tq: dq.TaskQueue, ids: list[str], before: dict[int, list[int]],
                 cut_short: set[int]) -> set[int]:
    """Check what a SIGKILL of a worker draining the ``N`` jobs ``ids`` left on disk
    (``before``: the jobs that started, ``cut_short``: those that did not end); returns
    the jobs that were running."""
    records = [tq.job(job_id).info() for job_id in ids]
    # running at the kill: started, outcome not stored (the task may have returned, or
    # not have begun: a thread records a start before it calls the task, so a kill
    # between the two leaves a start that the app's log does not show)
    running = {n for n, rec in enumerate(records) if rec["state"] == "started"}
    assert cut_short <= running and len(running) <= THREADS  # one job per thread
    for n, record in enumerate(records):
        if n in running:
            assert record["attempts"] == 1, record
        elif n in before:
            assert (record["state"], record["attempts"]) == ("success", 1), record
        else:  # taken ahead or still queued: not started, not an attempt
            assert (record["state"], record["attempts"]) == ("pending", 0), record
    stats = tq.stats()["default"]
    stored = len(set(before) - running)
    assert stats["done"] == stored
    assert stats["depth"] == N - stored and stats["in_flight"] == 0
    return running


def rerun_once(tq: dq.TaskQueue, ids: list[str], log, running: set[int],
               unlogged: set[int]) -> None:
    """Check the end of the drain after the kill: every job ended, those running at
    the kill ran again and no other, one attempt per start, the counts exact
    (``unlogged``: jobs started at the kill before the task logged its start)."""
    after = starts(log)
    assert set(ends(log)) == set(range(N)), "a job was lost"
    twice = {n for n, pids in after.items() if len(pids) > 1}
    assert twice == running - unlogged  # what was running at the kill ran again
    assert all(len(after[n]) == 1 for n in unlogged)  # ... once it ran at all
    assert all(len(pids) <= 2 for pids in after.values())
    for n, job_id in enumerate(ids):
        record = tq.job(job_id).info()
        assert record["state"] == "success" and record["result"] == n
        # one per start, no more (and the start recorded at the kill)
        assert record["attempts"] == len(after[n]) + (n in unlogged), record
    stats = tq.stats()["default"]
    assert stats["done"] == N
    assert stats["depth"] == stats["in_flight"] == stats["scheduled"] == 0


def test_every_outcome_is_exact_when_jobs_of_a_batch_end_in_different_ways(tmp_path):
    """Successes, failures, a result that cannot be stored, unknown tasks and unique
    keys, interleaved in one deep queue: each job ends once, in its own state, and the
    counts add up (the next job of a batch is begun in the write of the one before)."""
    tasks = dq.TaskQueue(tmp_path / "jobs", middleware=())

    @tasks.task()
    def ok(n):
        return n

    @tasks.task(retries=0)
    def boom(n):
        raise ValueError(n)

    @tasks.task()
    def odd(n):
        return object()  # msgpack cannot store it: the job fails

    kinds = ("ok", "boom", "odd", "gone")
    jobs = []
    for i in range(400):
        kind = kinds[i % 7 % 4]
        if kind == "ok" and i % 5 == 0:
            jobs.append((kind, i, tasks.apply("ok", (i,), unique_key=f"u{i}")))
        else:
            jobs.append((kind, i, tasks.enqueue_many(kind, [(i,)])[0]))
    worker = tasks.start(concurrency=3)
    try:
        assert worker.wait_idle(60)
    finally:
        assert worker.stop()
    want = {"ok": "success", "boom": "dead", "odd": "dead", "gone": "dead"}
    for kind, i, job in jobs:
        record = job.info()
        tried = 0 if kind == "gone" else 1  # a task not registered here is never started
        assert (record["state"], record["attempts"]) == (want[kind], tried), record
        if kind == "ok":
            assert record["result"] == i
    stats = tasks.stats()["default"]
    n_ok = sum(kind == "ok" for kind, _, _ in jobs)
    assert stats["done"] == n_ok
    assert stats["failed"] == stats["dead"] == len(jobs) - n_ok
    assert stats["depth"] == stats["in_flight"] == stats["retried"] == 0
    assert worker.finished == len(jobs)
    again = tasks.apply("ok", (0,), unique_key="u0")  # the guard went with the outcome
    assert again.id != jobs[0][2].id
    tasks.close()
