"""The stdlib face: CPython's own ``test.test_queue`` mixin run against diskqueue, plus a
few direct checks of ``put``/``get`` semantics.

The import of ``test.test_queue`` is deliberately unguarded: without CPython's test
package this module must fail to import, not skip.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
import unittest

import pytest
from test.test_queue import BaseQueueTestMixin

import diskqueue as dq


class LifoQueue(dq.Stack):
    """The mixin picks the expected order by class name."""


class PriorityQueue(dq.PriorityQueue):
    """CPython's mixin also puts the str ``"empty"`` into a PriorityQueue only to wake a
    blocked ``get`` (it never checks what comes back). A disk queue cannot order a str,
    so SPEC §2 makes that put a TypeError (tests/test_priority_put.py); here it goes in
    as ``(0, "empty")`` and the rest of the mixin runs unchanged."""

    def put(self, item, block=True, timeout=None):
        if isinstance(item, str):
            item = (0, item)
        super().put(item, block, timeout)


class DiskMixin(BaseQueueTestMixin):
    queue = queue  # the mixin raises/catches self.queue.Full and self.queue.Empty
    cls: type

    def setUp(self):
        super().setUp()
        root = tempfile.mkdtemp(prefix="dq-stdlib-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        handles = []

        def factory(maxsize=0):
            handle = self.cls(tempfile.mkdtemp(dir=root), maxsize=maxsize)
            handles.append(handle)
            return handle

        self.addCleanup(lambda: [h.close() for h in handles])
        self.type2test = factory


# queue.Queue.shutdown() came with Python 3.13 and is not part of the face SPEC §2 promises
# (put/get/..._nowait/qsize/empty/full/task_done/join): CPython's tests of it are left out
# where its mixin has them.
for _name in [name for name in dir(BaseQueueTestMixin) if name.startswith("test_shutdown")]:
    setattr(DiskMixin, _name,
            unittest.skip("queue.Queue.shutdown() (Python 3.13) is not offered")(
                lambda self: None))


class TestQueueMixin(DiskMixin, unittest.TestCase):
    cls = dq.Queue


class TestLifoQueueMixin(DiskMixin, unittest.TestCase):
    cls = LifoQueue


class TestPriorityQueueMixin(DiskMixin, unittest.TestCase):
    cls = PriorityQueue


def test_the_mixin_compares_by_these_class_names():
    assert {dq.Queue.__name__, LifoQueue.__name__, dq.PriorityQueue.__name__} == {
        "Queue", "LifoQueue", "PriorityQueue"}
    assert issubclass(dq.Empty, queue.Empty) and issubclass(dq.Full, queue.Full)


# -- direct checks -------------------------------------------------------------------------
@pytest.fixture(params=[dq.Queue, dq.Stack, dq.PriorityQueue])
def stdq(request, tmp_path):
    with request.param(tmp_path / "q") as handle:
        yield handle


def test_get_returns_the_value_not_an_item(stdq):
    # A PriorityQueue's put takes a (priority, value) pair: a bare "hello" has no priority.
    put = (1, "hello") if isinstance(stdq, dq.PriorityQueue) else "hello"
    stdq.put(put)
    assert stdq.qsize() == 1 and not stdq.empty() and not stdq.full()
    got = stdq.get()
    assert got == put and not isinstance(got, dq.Item)  # as it was put, like the stdlib
    assert stdq.empty()


@pytest.mark.parametrize("pair", [(3, "x"), (-(2**63), {"k": 1}), (2**63 - 1, None), (5, 5),
                                  (0, b"raw"), (1, "")], ids=repr)
def test_priority_queue_get_returns_a_real_priority_value_tuple(tmp_path, pair):
    with dq.PriorityQueue(tmp_path / "q") as pq:
        pq.put(pair)
        got = pq.get()
        assert type(got) is tuple and got == pair


def test_priority_queue_get_orders_by_priority(tmp_path):
    with dq.PriorityQueue(tmp_path / "q") as pq:
        for pair in [(3, "c"), (1, "a"), (2, "b"), (1, "a2")]:
            pq.put(pair)
        assert [pq.get_nowait() for _ in range(4)] == [(1, "a"), (1, "a2"), (2, "b"), (3, "c")]


def test_maxsize_can_be_reassigned(stdq):
    stdq.maxsize = 2
    stdq.put_nowait(1)
    stdq.put_nowait(2)
    assert stdq.full()
    with pytest.raises(dq.Full):
        stdq.put_nowait(3)
    stdq.maxsize = 3
    assert not stdq.full()
    stdq.put_nowait(3)
    stdq.maxsize = 1
    with pytest.raises(dq.Full):
        stdq.put(4, block=False)
    stdq.maxsize = 0
    stdq.put_nowait(4)
    assert stdq.qsize() == 4


def test_maxsize_counts_items_already_on_disk(tmp_path):
    with dq.Queue(tmp_path / "q") as q:
        for n in range(3):
            q.put(n)
    with dq.Queue(tmp_path / "q", maxsize=3) as q:
        assert q.full()
        with pytest.raises(dq.Full):
            q.put_nowait(3)


def test_put_blocks_then_times_out_with_full(stdq):
    stdq.maxsize = 1
    stdq.put(1)
    start = time.monotonic()
    with pytest.raises(dq.Full):
        stdq.put(2, timeout=0.2)
    assert time.monotonic() - start >= 0.19
    assert stdq.qsize() == 1


def test_blocked_put_is_released_by_a_get(stdq):
    stdq.maxsize = 1
    stdq.put(1)
    later = threading.Timer(0.1, stdq.get)
    later.start()
    stdq.put(2, timeout=5)
    later.join()
    assert stdq.qsize() == 1


def test_task_done_and_join(stdq):
    for n in range(3):
        stdq.put(n)
    done = threading.Event()

    def joiner():
        stdq.join()
        done.set()

    waiter = threading.Thread(target=joiner)
    waiter.start()
    for _ in range(3):
        stdq.get()
        assert not done.wait(0.05)
        stdq.task_done()
    assert done.wait(5)
    waiter.join()
    with pytest.raises(ValueError):
        stdq.task_done()
