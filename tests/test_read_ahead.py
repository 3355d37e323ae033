"""A lane dequeued twice in a row is read ahead; nothing read ahead may go stale.

The cases that could serve an old value: ``update`` of an item already read ahead, and a
Stack (same directory, same lane) popping the tail and giving that id to its next push.
"""

from __future__ import annotations

from collections import deque

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import diskqueue as dq

INTS = st.integers(-(2**63), 2**63 - 1)


def test_update_after_read_ahead_is_seen(path):
    with dq.Queue(path) as q:
        q.enqueue_many(range(10))
        assert [q.dequeue().value for _ in range(2)] == [0, 1]  # the second reads ahead
        q.update(6, "new")  # ids count from 1: the value 5
        assert [q.dequeue().value for _ in range(8)] == [2, 3, 4, "new", 6, 7, 8, 9]


def test_stack_reusing_a_read_ahead_id_is_seen(path):
    with dq.Queue(path) as q, dq.Stack(path) as s:
        q.enqueue_many(range(10))
        assert [q.dequeue().value for _ in range(2)] == [0, 1]
        top = s.pop()
        assert top.value == 9
        again = s.push("pushed")
        assert again.id == top.id
        assert [q.dequeue().value for _ in range(8)] == [2, 3, 4, 5, 6, 7, 8, "pushed"]


def test_reserve_and_nack_around_read_ahead(path):
    with dq.Queue(path) as q:
        q.enqueue_many(range(10))
        assert [q.dequeue().value for _ in range(2)] == [0, 1]
        item = q.reserve()
        assert item.value == 2
        assert q.dequeue().value == 3
        q.nack(item)
        assert [q.dequeue().value for _ in range(7)] == [2, 4, 5, 6, 7, 8, 9]
        assert len(q) == 0


def test_read_ahead_survives_interleaved_lanes(path):
    with dq.PrefixQueue(path) as q:
        for i in range(20):
            q.enqueue(b"a", i)
            q.enqueue(b"b", -i)
        got = [q.dequeue(b"a").value for _ in range(3)]
        got += [q.dequeue(b"b").value for _ in range(3)]
        got += [q.dequeue(b"a").value for _ in range(17)]
        got += [q.dequeue(b"b").value for _ in range(17)]
        assert got == [0, 1, 2, 0, -1, -2, *range(3, 20), *(-i for i in range(3, 20))]


class QueueAndStack(RuleBasedStateMachine):
    """One directory opened as a Queue and as a Stack at once, against a deque."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="dq-ahead-")
        self.q = dq.Queue(self.dir + "/d")
        self.s = dq.Stack(self.dir + "/d")
        self.model: deque[tuple[int, int]] = deque()  # (id, value)

    def teardown(self) -> None:
        import shutil

        self.q.close()
        self.s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(values=st.lists(INTS, min_size=1, max_size=8))
    def enqueue_many(self, values):
        for item, value in zip(self.q.enqueue_many(values), values, strict=True):
            self.model.append((item.id, value))

    @rule(value=INTS)
    def push(self, value):
        self.model.append((self.s.push(value).id, value))

    @rule()
    def dequeue(self):
        if not self.model:
            return
        item = self.q.dequeue()
        assert (item.id, item.value) == self.model.popleft()

    @rule()
    def pop(self):
        if not self.model:
            return
        item = self.s.pop()
        assert (item.id, item.value) == self.model.pop()

    @rule(pos=st.integers(0, 20), value=INTS)
    def update(self, pos, value):
        if pos >= len(self.model):
            return
        seq, _ = self.model[pos]
        self.q.update(seq, value)
        self.model[pos] = (seq, value)

    @invariant()
    def same_length(self):
        assert len(self.q) == len(self.model)


TestQueueAndStack = QueueAndStack.TestCase
TestQueueAndStack.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
