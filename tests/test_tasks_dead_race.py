"""``retry_dead`` racing itself (threads of one process, and separate processes): each
dead job goes back to its queue exactly once; and a retried job takes its ``unique_key``
back, so ``apply(unique_key=...)`` returns it instead of enqueueing a second job."""

from __future__ import annotations

import threading

import pytest

import diskqueue as dq
from diskqueue.tasks import layout as R

try:
    from . import faults
    from .test_tasks_support import until
except ImportError:
    import faults
    from test_tasks_support import until

pytestmark = pytest.mark.timeout(180)

DEAD = 1000


def _make_dead(path, n: int) -> list[str]:
    """``n`` dead jobs of a task that always fails, made by a real worker."""
    tq = dq.TaskQueue(path)

    @tq.task(name="doomed")
    def doomed(i):
        raise RuntimeError(f"doomed {i}")

    jobs = doomed.map(range(n))
    worker = tq.start(concurrency=4)
    try:
        until(lambda: tq.stats()["default"]["dead"] == n, timeout=120, what=f"{n} dead jobs")
    finally:
        assert worker.stop()
        tq.close()
    return [job.id for job in jobs]


def _depth(tq: dq.TaskQueue) -> int:
    return int(tq._engine().length(R.queue_ns("default")))


def _queued(tq: dq.TaskQueue) -> list[str]:
    """The job id of every entry in the default queue."""
    return [bytes(e[3]).decode()
            for e in tq._engine().scan(R.queue_ns("default"), limit=10 * DEAD)]


def test_two_threads_retrying_all_dead_jobs_move_each_once(tmp_path):
    path = tmp_path / "jobs"
    ids = _make_dead(path, DEAD)
    tq = dq.TaskQueue(path)
    try:
        barrier = threading.Barrier(2)
        counts: list[int] = []

        def retry() -> None:
            barrier.wait()
            counts.append(tq.retry_dead())

        threads = [threading.Thread(target=retry) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sorted(counts)[0] + sorted(counts)[1] == DEAD, counts
        assert _depth(tq) == DEAD
        assert tq.dead() == []
        # every id is in the queue once
        assert sorted(_queued(tq)) == sorted(ids)
        assert {tq.job(i).state for i in ids} == {"pending"}
    finally:
        tq.close()


CHILD = """
import os, sys, time
import diskqueue as dq
path, go = sys.argv[1], sys.argv[2]
tq = dq.TaskQueue(path)
tq.stats()  # open (owner or client) before the start line
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
print("moved", tq.retry_dead(), flush=True)
tq.close()
"""


def test_two_processes_retrying_all_dead_jobs_move_each_once(tmp_path):
    path = tmp_path / "jobs"
    ids = _make_dead(path, DEAD)
    go = tmp_path / "go"
    children = [faults.Child(CHILD, str(path), str(go)) for _ in range(2)]
    try:
        for child in children:
            child.wait_lines(1, timeout=60)
        go.touch()
        moved = []
        for child in children:
            code, out = child.finish(timeout=120)
            assert code == 0, out
            moved += [int(line.split()[1]) for line in out if line.startswith("moved")]
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.kill()
    assert len(moved) == 2 and sum(moved) == DEAD, moved
    tq = dq.TaskQueue(path)
    try:
        assert _depth(tq) == DEAD
        assert sorted(_queued(tq)) == sorted(ids)
    finally:
        tq.close()


def test_retrying_one_dead_job_from_two_threads_moves_it_once(tmp_path):
    path = tmp_path / "jobs"
    (jid,) = _make_dead(path, 1)
    tq = dq.TaskQueue(path)
    try:
        for _ in range(20):
            barrier = threading.Barrier(4)
            counts: list[int] = []

            def retry(barrier: threading.Barrier = barrier, counts: list[int] = counts) -> None:
                barrier.wait()
                try:
                    counts.append(tq.retry_dead(jid))
                except ValueError:  # it was no longer dead when this one looked
                    counts.append(0)

            threads = [threading.Thread(target=retry) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sum(counts) == 1, counts
            assert _depth(tq) == 1
            # let it die again, by hand: a worker that runs it once
            worker = tq.start(concurrency=1)
            try:
                until(lambda: tq.job(jid).state == "dead", what="dead again")
            finally:
                assert worker.stop()
            assert _depth(tq) == 0
    finally:
        tq.close()


def test_a_retried_job_takes_its_unique_key_back(tasks):
    @tasks.task(name="once")
    def once(n):
        raise LookupError("not yet")

    first = once.apply(args=(1,), unique_key="order-42")
    assert once.apply(args=(1,), unique_key="order-42") == first  # the guard holds
    worker = tasks.start(concurrency=1)
    try:
        until(lambda: first.state == "dead", what="dead")
    finally:
        assert worker.stop()
    assert tasks.retry_dead(first.id) == 1
    again = once.apply(args=(1,), unique_key="order-42")
    assert again == first, "a second job was created while the retried one is pending"
    assert _depth(tasks) == 1
    assert tasks.enqueue("once", 2) != first  # other jobs are not affected


def test_retry_all_restores_unique_keys_too(tasks):
    @tasks.task(name="once")
    def once(n):
        raise LookupError("not yet")

    jobs = [once.apply(args=(n,), unique_key=f"k{n}") for n in range(3)]
    worker = tasks.start(concurrency=1)
    try:
        until(lambda: len(tasks.dead()) == 3, what="dead")
    finally:
        assert worker.stop()
    assert tasks.retry_dead() == 3
    for n, job in enumerate(jobs):
        assert once.apply(args=(n,), unique_key=f"k{n}") == job
    assert _depth(tasks) == 3


def test_a_key_taken_meanwhile_stays_with_its_new_job(tasks):
    """A job dies and a new job takes its key: retrying the dead one leaves the key
    with the new job (it is the pending one users dedupe against)."""
    @tasks.task(name="once")
    def once(n):
        raise LookupError("not yet")

    first = once.apply(args=(1,), unique_key="k")
    worker = tasks.start(concurrency=1)
    try:
        until(lambda: first.state == "dead", what="dead")
    finally:
        assert worker.stop()
    second = once.apply(args=(2,), unique_key="k")
    assert second != first
    assert tasks.retry_dead(first.id) == 1
    assert once.apply(args=(3,), unique_key="k") == second
    assert _depth(tasks) == 2
