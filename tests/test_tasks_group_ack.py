"""The outcomes of a client worker's threads go to the owner together: the engine's
``ack_each`` deletes several reserved items, each with its records, in one batch (one
round trip for a client), and a thread pool whose engine is a client's writes the acks
of the threads that ended their jobs meanwhile in one. Each thread still waits for the
batch holding its outcome before it goes on, so a SIGKILL of a client worker loses
nothing and reruns only the jobs that were running."""

from __future__ import annotations

import math
import threading

import pytest

import diskqueue as dq
from diskqueue.tasks.worker.groupack import GroupAck

try:
    from . import faults
    from .test_sharing import holding
    from .test_tasks_drain_batches import (
        THREADS,
        enqueue_work,
        kill_mid_drain,
        left_by_kill,
        rerun_once,
    )
    from .test_tasks_support import run_worker, until, write_app
except ImportError:
    import faults
    from test_sharing import holding
    from test_tasks_drain_batches import (
        THREADS,
        enqueue_work,
        kill_mid_drain,
        left_by_kill,
        rerun_once,
    )
    from test_tasks_support import run_worker, until, write_app


def _acks_of(q: dq.Queue, n: int) -> list:
    eng, ns = q._engine, q._ns
    taken = eng.take(ns, n, lease=math.inf)
    return [(ns, lane, seq, attempts, [(b"out", b"r%d" % seq, b"v%d" % seq)])
            for lane, seq, _, _, attempts in taken]


@pytest.mark.parametrize("role", ["owner", "client"])
def test_ack_each_stores_each_reserved_item_and_skips_the_others(tmp_path, role):
    path = str(tmp_path / "q")
    with (holding(path) if role == "client" else _nothing()), dq.Queue(path) as q:
        assert q.role == role
        q.enqueue_many(range(5))
        eng = q._engine
        acks = _acks_of(q, 3)
        ns, lane, seq, attempts, _ = acks[1]
        stale = (ns, lane, seq, attempts + 1, [(b"out", b"stale", b"x")])  # wrong attempts
        missing = (ns, lane, 999, None, [(b"out", b"missing", b"x")])
        assert eng.ack_each([acks[0], stale, missing, acks[1]]) == [True, False, False, True]
        assert eng.get_record(b"out", b"r1") == b"v1" and eng.get_record(b"out", b"r2") == b"v2"
        assert eng.get_record(b"out", b"stale") is None
        assert eng.get_record(b"out", b"missing") is None
        assert eng.in_flight(ns) == 1  # the third, not acked
        assert eng.ack_each([acks[2]]) == [True] and eng.in_flight(ns) == 0
        assert eng.ack_each([acks[2]]) == [False]  # twice: not reserved any more
        assert [i.value for i in q] == [3, 4]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_malformed_ack_each_is_refused_by_the_holder(tmp_path):
    path = str(tmp_path / "q")
    with holding(path), dq.Queue(path) as q:
        q.enqueue("kept")
        with pytest.raises(TypeError):
            q._engine.call("ack_each", [[[q._ns, b"", 1]]], {})
        with pytest.raises(TypeError):
            q._engine.call("ack_each", [[[q._ns, b"", 1, None, [[b"ns", b"k", 5]]]]], {})
        assert [i.value for i in q] == ["kept"]


@pytest.mark.parametrize("role", ["owner", "client"])
def test_group_ack_from_many_threads_stores_every_outcome_once(tmp_path, role):
    path = str(tmp_path / "q")
    threads, each = 8, 25
    with (holding(path) if role == "client" else _nothing()), dq.Queue(path) as q:
        q.enqueue_many(range(threads * each))
        group = GroupAck(q._engine, sync=False)
        acks = _acks_of(q, threads * each)
        results: list[bool] = []
        go = threading.Barrier(threads)

        def ack_mine(mine: list) -> None:
            go.wait()
            for ack in mine:
                results.append(group.ack(ack))

        pool = [threading.Thread(target=ack_mine, args=(acks[i::threads],))
                for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(60)
        assert results == [True] * len(acks)
        assert 1 <= group.batches <= len(acks)
        eng = q._engine
        assert eng.in_flight(q._ns) == 0 and len(q) == 0
        for _, _, seq, _, _ in acks:
            assert eng.get_record(b"out", b"r%d" % seq) == b"v%d" % seq
        assert group.ack(acks[0]) is False  # acked already: not stored again


def test_group_ack_raises_the_write_error_in_every_waiting_thread(tmp_path):
    with dq.Queue(str(tmp_path / "q")) as q:
        q.enqueue_many(range(2))
        group = GroupAck(q._engine, sync=False)
        acks = _acks_of(q, 2)
        q._engine.close()
        for ack in acks:
            with pytest.raises(dq.Closed):
                group.ack(ack)
        assert group.ack is not None and not group.group._waiting and not group.group._leading


TASK_HOLDER = r"""
import sys, time, diskqueue as dq
tq = dq.TaskQueue(sys.argv[1])
tq.stats()  # opens the directory: this process holds it
print("role", tq.store.engine().role, flush=True)
time.sleep(600)
"""


@pytest.mark.timeout(180)
def test_sigkill_of_a_client_worker_reruns_only_its_running_jobs(tmp_path):
    app = write_app(tmp_path)
    log, path = tmp_path / "log", tmp_path / "jobs"
    ids = enqueue_work(path)
    holder = faults.Child(TASK_HOLDER, str(path))
    assert holder.wait_lines(1, timeout=30) == ["role owner"]
    try:
        before, cut_short = kill_mid_drain(path, app, tmp_path, log)

        with dq.TaskQueue(path) as tq:  # what the kill left, as the holder sees it
            tq.stats()
            assert tq.store.engine().role == "client"
            until(lambda: tq.stats()["default"]["in_flight"] == 0, timeout=30,
                  what="the holder to take back the killed client's jobs")
            running = left_by_kill(tq, ids, before, cut_short)

        # drained by a client worker again: its acks go in groups too
        done = run_worker(path, f"{app}:tasks", "--drain", "--concurrency", str(THREADS),
                          cwd=tmp_path, log=log, timeout=150)
        assert done.returncode == 0, done.stderr
    finally:
        holder.kill()
    with dq.TaskQueue(path) as tq:
        rerun_once(tq, ids, log, running, running - set(before))


def test_a_client_worker_groups_its_acks_and_its_counts_stay_exact(tmp_path):
    """In-process client worker, 4 threads: successes, retried failures and dead jobs
    all end once, the counts add up, and the acks went through the group."""
    path = tmp_path / "jobs"
    holder = faults.Child(TASK_HOLDER, str(path))
    assert holder.wait_lines(1, timeout=30) == ["role owner"]
    try:
        tasks = dq.TaskQueue(path, middleware=())

        @tasks.task(result_ttl=60)
        def ok(n):
            return n

        @tasks.task(retries=1, backoff=0.01)
        def boom(n):
            raise ValueError(n)

        with tasks:
            jobs = [ok.delay(i) if i % 5 else boom.delay(i) for i in range(120)]
            assert tasks.store.engine().role == "client"
            worker = tasks.start(concurrency=THREADS)
            try:
                until(lambda: worker.finished == len(jobs), timeout=60, what="every job")
                group = worker.runner.group
                assert group is not None and 1 <= group.batches <= 120 + 24
            finally:
                worker.stop()
            for i, job in enumerate(jobs):
                info = job.info()
                if i % 5:
                    assert (info["state"], info["result"], info["attempts"]) == ("success", i, 1)
                else:
                    assert (info["state"], info["attempts"], info["failures"]) == ("dead", 2, 2)
            stats = tasks.stats()["default"]
            assert (stats["done"], stats["dead"]) == (96, 24)
            assert (stats["failed"], stats["retried"]) == (48, 24)
            assert stats["depth"] == stats["in_flight"] == 0
    finally:
        holder.kill()
