"""Hypothesis state machines: each structure against a plain in-memory model.

The model keeps, per lane (the one run of a Queue/Stack, a priority level, a prefix),
the ready items in dequeue order: items returned by ``nack``/lease expiry/reopen sit at
the front in id order, then the rest. Ids are predicted for FIFO lanes (1, 2, 3…) and
learned for the Stack (which may reuse popped ids) and for ``nack(front=False)``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import diskqueue as dq

SETTINGS = settings(max_examples=50, stateful_step_count=50, deadline=None)
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                   st.text(max_size=6), st.binary(max_size=6),
                   st.lists(st.integers(-5, 5), max_size=3))
IX = st.integers(0, 9)  # picks a lane, or a reservation, modulo how many there are
LONG_LEASE, SHORT_LEASE = 600.0, 0.02
ALL = object()  # "every lane, in dequeue order"


@dataclass
class Entry:
    id: int
    value: Any
    attempts: int = 0


class Lane:
    def __init__(self) -> None:
        self.front: list[Entry] = []  # put back by nack / lease expiry / reopen
        self.run: list[Entry] = []
        self.next_id = 1

    def ready(self) -> list[Entry]:
        return sorted(self.front, key=lambda e: e.id) + self.run


class Model:
    def __init__(self, lifo: bool) -> None:
        self.lifo, self.desc = lifo, False
        self.lanes: dict[Any, Lane] = defaultdict(Lane)
        self.reserved: dict[tuple, tuple[Entry, dq.Item]] = {}

    def order(self, lane: Any = ALL) -> list[tuple[Any, Entry]]:
        if lane is ALL:
            keys = sorted((k for k, ln in self.lanes.items() if ln.front or ln.run),
                          reverse=self.desc)
        else:
            keys = [lane]
        out = []
        for k in keys:
            ready = self.lanes[k].ready()
            out += [(k, e) for e in (ready[::-1] if self.lifo else ready)]
        return out

    def __len__(self) -> int:
        return sum(len(ln.front) + len(ln.run) for ln in self.lanes.values())

    def take(self, lane: Any, entry: Entry) -> None:
        ln = self.lanes[lane]
        (ln.front if entry in ln.front else ln.run).remove(entry)

    def reopen(self) -> None:
        for (lane, _), (entry, _) in self.reserved.items():
            self.lanes[lane].front.append(entry)
        self.reserved.clear()

    def clear(self) -> None:
        for ln in self.lanes.values():
            ln.front, ln.run = [], []
        self.reserved.clear()


class Machine(RuleBasedStateMachine):
    """Rules common to all four; subclasses say how each call is spelt."""

    CLS: type
    LANES: list = [None]
    GLOBAL = True  # dequeue/peek/reserve take no lane (all but PrefixQueue)
    LIFO = False
    ADD, ADD_MANY, REMOVE, REMOVE_MANY = "enqueue", "enqueue_many", "dequeue", "dequeue_many"
    PEEK_BY_ID = "peek_by_id"

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="dq-sm-")
        self.model = Model(self.LIFO)
        self.q = self.open(desc=False)

    def teardown(self) -> None:
        self.q.drop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- how this structure is spelt ----------------------------------------------------
    def open(self, desc: bool) -> Any:
        return self.CLS(os.path.join(self.dir, "q"))

    def lane(self, ix: int) -> Any:
        """Most picks land on the first lane, so that items meet there."""
        return self.LANES[ix] if ix < len(self.LANES) else self.LANES[0]

    def target(self, ix: int) -> Any:
        """Where dequeue/peek/reserve look: everything, or one prefix."""
        return ALL if self.GLOBAL else self.lane(ix)

    def lane_args(self, lane: Any) -> tuple:
        """The leading arguments naming a lane (none for Queue/Stack)."""
        return ()

    def target_args(self, target: Any) -> tuple:
        return () if target is ALL else self.lane_args(target)

    def lane_of(self, item: dq.Item) -> Any:
        return None

    def add_many(self, lane: Any, values: list) -> list[dq.Item]:
        return getattr(self.q, self.ADD_MANY)(*self.lane_args(lane), values)

    # -- checks ------------------------------------------------------------------------
    def seen(self, item: dq.Item) -> tuple:
        return self.lane_of(item), item.id, item.value

    def expect_added(self, lane: Any, item: dq.Item, value: Any) -> None:
        ln = self.model.lanes[lane]
        assert self.seen(item) == (lane, item.id, value)
        if self.LIFO:  # ids are learned: they must only be unique among live items
            assert item.id not in {e.id for e in ln.run}
        else:
            assert item.id == ln.next_id
            ln.next_id += 1
        ln.run.append(Entry(item.id, value))

    def expect_id_error(self, lane: Any, call) -> None:
        """A call naming an id that is not ready in ``lane``."""
        if not len(self.model):
            error: Any = dq.Empty
        elif not self.model.order(lane):
            # Another lane holds items: SPEC reads OutOfBounds for a PriorityQueue level
            # (pinned in test_contract); a prefix is its own queue, so Empty is fair too.
            error = (dq.Empty, dq.OutOfBounds)
        else:
            error = dq.OutOfBounds
        with pytest.raises(error):
            call()

    # -- rules ---------------------------------------------------------------------------
    @rule(ix=IX, value=VALUES)
    def enqueue(self, ix, value):
        lane = self.lane(ix)
        self.expect_added(lane, getattr(self.q, self.ADD)(*self.lane_args(lane), value), value)

    @rule(ix=IX, values=st.lists(VALUES, max_size=4))
    def enqueue_many(self, ix, values):
        lane = self.lane(ix)
        items = self.add_many(lane, values)
        assert len(items) == len(values)
        for item, value in zip(items, values, strict=True):
            self.expect_added(lane, item, value)

    @rule(ix=IX)
    def dequeue(self, ix):
        target = self.target(ix)
        expected = self.model.order(target)
        if not expected:
            with pytest.raises(dq.Empty):
                getattr(self.q, self.REMOVE)(*self.target_args(target))
            return
        lane, entry = expected[0]
        item = getattr(self.q, self.REMOVE)(*self.target_args(target))
        assert self.seen(item) == (lane, entry.id, entry.value)
        self.model.take(lane, entry)

    @rule(ix=IX, n=st.integers(1, 4))
    def dequeue_many(self, ix, n):
        target = self.target(ix)
        expected = self.model.order(target)[:n]
        if not expected:
            with pytest.raises(dq.Empty):
                getattr(self.q, self.REMOVE_MANY)(*self.target_args(target), n)
            return
        items = getattr(self.q, self.REMOVE_MANY)(*self.target_args(target), n)
        assert [self.seen(i) for i in items] == [(k, e.id, e.value) for k, e in expected]
        for lane, entry in expected:
            self.model.take(lane, entry)

    @rule(ix=IX, offset=st.integers(0, 6))
    def peek_by_offset(self, ix, offset):
        target = self.target(ix)
        expected = self.model.order(target)
        call = lambda: self.q.peek_by_offset(*self.target_args(target), offset)  # noqa: E731
        if offset < len(expected):
            lane, entry = expected[offset]
            assert self.seen(call()) == (lane, entry.id, entry.value)
            if offset == 0:
                assert self.seen(self.q.peek(*self.target_args(target))) == self.seen(call())
        else:
            with pytest.raises(dq.Empty if not expected else dq.OutOfBounds):
                call()

    @rule(ix=IX, id=st.integers(0, 8))
    def peek_by_id(self, ix, id):
        lane = self.lane(ix)
        ready = {e.id: e for e in self.model.lanes[lane].ready()}
        call = lambda: getattr(self.q, self.PEEK_BY_ID)(*self.lane_args(lane), id)  # noqa: E731
        if id in ready:
            assert self.seen(call()) == (lane, id, ready[id].value)
        else:
            self.expect_id_error(lane, call)

    @rule(ix=IX, id=st.integers(0, 8), value=VALUES)
    def update(self, ix, id, value):
        lane = self.lane(ix)
        ready = {e.id: e for e in self.model.lanes[lane].ready()}
        call = lambda: self.q.update(*self.lane_args(lane), id, value)  # noqa: E731
        if id in ready:
            assert self.seen(call()) == (lane, id, value)
            ready[id].value = value
        else:
            self.expect_id_error(lane, call)

    @rule()
    def clear(self):
        self.q.clear()
        self.model.clear()

    @rule(desc=st.booleans())
    def reopen(self, desc):
        self.q.close()
        self.q = self.open(desc)
        self.model.reopen()

    @invariant()
    def agrees_with_the_model(self):
        assert len(self.q) == len(self.model)
        assert bool(self.q) == bool(len(self.model))
        actual = [self.seen(item) for item in self.q]
        if not self.GLOBAL:  # only the order within each prefix is promised
            actual.sort(key=lambda seen: seen[0])
        assert actual == [(k, e.id, e.value) for k, e in self.model.order()]


class ReliableMachine(Machine):
    """reserve/ack/nack and lease expiry (Queue, PriorityQueue, PrefixQueue)."""

    ACK_BY_ID = False  # a bare id is only unambiguous on a single lane

    def reserve_expected(self, ix, lease):
        target = self.target(ix)
        expected = self.model.order(target)
        if not expected:
            with pytest.raises(dq.Empty):
                self.q.reserve(*self.target_args(target), lease=lease)
            return None
        lane, entry = expected[0]
        item = self.q.reserve(*self.target_args(target), lease=lease)
        assert self.seen(item) == (lane, entry.id, entry.value)
        assert item.attempts == entry.attempts + 1
        self.model.take(lane, entry)
        entry.attempts += 1
        return lane, entry, item

    def pick_reserved(self, ix):
        key = sorted(self.model.reserved, key=repr)[ix % len(self.model.reserved)]
        return key[0], *self.model.reserved.pop(key)

    @rule(ix=IX)
    def reserve(self, ix):
        taken = self.reserve_expected(ix, LONG_LEASE)
        if taken:
            lane, entry, item = taken
            self.model.reserved[(lane, entry.id)] = (entry, item)

    @precondition(lambda self: self.model.reserved)
    @rule(ix=IX, by_id=st.booleans())
    def ack(self, ix, by_id):
        _, _, item = self.pick_reserved(ix)
        self.q.ack(item.id if by_id and self.ACK_BY_ID else item)
        with pytest.raises(dq.NotReserved):
            self.q.ack(item)

    @precondition(lambda self: self.model.reserved)
    @rule(ix=IX, front=st.booleans())
    def nack(self, ix, front):
        lane, entry, item = self.pick_reserved(ix)
        self.q.nack(item, front=front)
        ln = self.model.lanes[lane]
        if front:
            ln.front.append(entry)
            return
        back = [i for i in self.q if self.lane_of(i) == lane][-1]  # learn its new id
        assert back.value == entry.value and back.id >= ln.next_id
        entry.id, ln.next_id = back.id, back.id + 1
        ln.run.append(entry)

    @rule(ix=IX)
    def reserve_and_let_the_lease_expire(self, ix):
        taken = self.reserve_expected(ix, SHORT_LEASE)
        if taken:
            lane, entry, _ = taken
            time.sleep(SHORT_LEASE * 1.5)
            assert self.q.in_flight() == len(self.model.reserved)  # forces the expiry
            self.model.lanes[lane].front.append(entry)

    @invariant()
    def in_flight_agrees(self):
        assert self.q.in_flight() == len(self.model.reserved)


class QueueMachine(ReliableMachine):
    CLS = dq.Queue
    ACK_BY_ID = True


class StackMachine(Machine):
    CLS = dq.Stack
    LIFO = True
    ADD, ADD_MANY, REMOVE, REMOVE_MANY = "push", "push_many", "pop", "pop_many"


class PriorityMachine(ReliableMachine):
    CLS = dq.PriorityQueue
    LANES = [-(2**63), -1, 0, 7, 2**63 - 1]
    PEEK_BY_ID = "peek_by_priority_id"

    def open(self, desc):
        self.model.desc = desc
        return dq.PriorityQueue(os.path.join(self.dir, "q"), order="desc" if desc else "asc")

    def lane_args(self, lane):
        return (lane,)

    def lane_of(self, item):
        return item.priority

    def add_many(self, lane, values):
        return self.q.enqueue_many([(lane, v) for v in values])

    @rule(ix=IX)
    def dequeue_by_priority(self, ix):
        lane = self.lane(ix)
        expected = self.model.order(lane)
        if not expected:
            with pytest.raises(dq.Empty):
                self.q.dequeue_by_priority(lane)
            return
        assert self.seen(self.q.dequeue_by_priority(lane)) == (lane, expected[0][1].id,
                                                              expected[0][1].value)
        self.model.take(lane, expected[0][1])

    @invariant()
    def levels_agree(self):
        levels = [k for k, _ in self.model.order()]
        assert self.q.priorities() == list(dict.fromkeys(levels))
        assert [self.q.length(p) for p in self.LANES] == [levels.count(p) for p in self.LANES]


class PrefixMachine(ReliableMachine):
    CLS = dq.PrefixQueue
    LANES = [b"a", b"a\x00b", b"\xff", b""]  # "a:" and friends: see test_contract
    AS_STR = {b"a": "a", b"a\x00b": "a\x00b"}  # these two are spelt as str
    GLOBAL = False

    def lane_args(self, lane):
        return (self.AS_STR.get(lane, lane),)

    def lane_of(self, item):
        return item.prefix

    @invariant()
    def prefixes_agree(self):
        lanes = [k for k, _ in self.model.order()]
        assert sorted(self.q.prefixes()) == sorted(set(lanes))
        assert len(self.q) == sum(self.q.length(p) for p in self.LANES)
        assert [self.q.length(p) for p in self.LANES] == [lanes.count(p) for p in self.LANES]


TestQueue = SETTINGS(QueueMachine).TestCase
TestStack = SETTINGS(StackMachine).TestCase
TestPriorityQueue = SETTINGS(PriorityMachine).TestCase
TestPrefixQueue = SETTINGS(PrefixMachine).TestCase
