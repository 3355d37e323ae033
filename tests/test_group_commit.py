"""Group commit: concurrent durable writes share commits, each caller gets its own result,
and a failed commit fails exactly the callers it carried."""

from __future__ import annotations

import threading
import time

import pytest

import diskqueue as dq
from diskqueue.engine.groupcommit import GroupCommit


def test_concurrent_submits_share_rounds_and_get_their_own_results():
    rounds: list[list[int]] = []

    def commit(works):
        rounds.append(list(works))
        time.sleep(0.002)  # an fsync
        return [w * 10 for w in works]

    group = GroupCommit(commit)
    got: dict[int, list[int]] = {k: [] for k in range(8)}

    def writer(k: int) -> None:
        for i in range(40):
            got[k].append(group.submit(k * 1000 + i))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(8):
        assert got[k] == [(k * 1000 + i) * 10 for i in range(40)]
    assert sorted(w for r in rounds for w in r) == sorted(k * 1000 + i for k in range(8)
                                                          for i in range(40))
    assert len(rounds) < 8 * 40 / 2, "writers waiting on one fsync were not grouped"


def test_a_failed_commit_fails_its_round_only():
    calls = 0

    def commit(works):
        nonlocal calls
        calls += 1
        if -1 in works:
            raise OSError("disk on fire")
        return works

    group = GroupCommit(commit)
    with pytest.raises(OSError, match="disk on fire"):
        group.submit(-1)
    assert group.submit(5) == 5
    assert calls == 2


def test_sync_queue_from_many_threads_keeps_every_item(path):
    with dq.Queue(path, sync=True) as q:
        placed: list[dq.Item] = []
        lock = threading.Lock()

        def writer(k: int) -> None:
            for i in range(50):
                item = q.enqueue([k, i])
                with lock:
                    placed.append(item)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({item.id for item in placed}) == 400
        by_id = {item.id: item.value for item in placed}
    with dq.Queue(path) as q:
        drained = q.dequeue_many(1000)
    assert [(i.id, i.value) for i in drained] == sorted(by_id.items())
    for k in range(8):
        assert [v for v in (i.value for i in drained) if v[0] == k] == [[k, i]
                                                                        for i in range(50)]
