"""Shared fixtures: a fresh queue directory, and one uniform face over the four structures.

The contract suite talks to an ``Adapter``: ``add``/``add_many``/``remove``/``remove_many``,
``peek``/``peek_by_offset``/``peek_by_id``/``update`` and (except Stack) ``reserve``.
PriorityQueue is driven on one level and PrefixQueue on one prefix, so all four behave
as one FIFO (or LIFO) run; their cross-level/prefix behaviour is tested on its own.
"""

from __future__ import annotations

from typing import Any

import pytest

import diskqueue as dq

LEVEL = 7  # the PriorityQueue level the adapter uses
PREFIX = "p"  # the PrefixQueue prefix the adapter uses


class Adapter:
    """One structure behind a uniform API. ``add`` puts PriorityQueue items on ``LEVEL``;
    ``lane`` is ``(PREFIX,)`` for PrefixQueue (its calls take the prefix first)."""

    def __init__(self, name: str, cls: type, path: Any, *, lifo: bool = False) -> None:
        self.name, self.cls, self.path, self.lifo = name, cls, path, lifo
        self.lane: tuple = (PREFIX,) if cls is dq.PrefixQueue else ()
        self.q: Any = None

    def open(self, **kw: Any) -> Any:
        """Open another handle on the directory."""
        return self.cls(self.path, **kw)

    def reopen(self, **kw: Any) -> Any:
        self.q.close()
        self.q = self.open(**kw)
        return self.q

    def order(self, values: list) -> list:
        """Values in the order this structure hands them back."""
        return list(reversed(values)) if self.lifo else list(values)

    def add(self, value: Any, q: Any = None) -> dq.Item:
        q = self.q if q is None else q
        if self.lifo:
            return q.push(value)
        if self.cls is dq.PriorityQueue:
            return q.enqueue(LEVEL, value)
        return q.enqueue(*self.lane, value)

    def add_many(self, values: list, q: Any = None) -> list[dq.Item]:
        q = self.q if q is None else q
        if self.lifo:
            return q.push_many(values)
        if self.cls is dq.PriorityQueue:
            return q.enqueue_many([(LEVEL, v) for v in values])
        return q.enqueue_many(*self.lane, values)

    def remove(self, q: Any = None, **kw: Any) -> dq.Item:
        q = self.q if q is None else q
        return q.pop(**kw) if self.lifo else q.dequeue(*self.lane, **kw)

    def remove_many(self, n: int, q: Any = None, **kw: Any) -> list[dq.Item]:
        q = self.q if q is None else q
        return q.pop_many(n, **kw) if self.lifo else q.dequeue_many(*self.lane, n, **kw)

    def peek(self, q: Any = None) -> dq.Item:
        return (self.q if q is None else q).peek(*self.lane)

    def peek_by_offset(self, offset: int) -> dq.Item:
        return self.q.peek_by_offset(*self.lane, offset)

    def peek_by_id(self, id: int) -> dq.Item:
        if self.cls is dq.PriorityQueue:
            return self.q.peek_by_priority_id(LEVEL, id)
        return self.q.peek_by_id(*self.lane, id)

    def update(self, id: int, value: Any) -> dq.Item:
        if self.cls is dq.PriorityQueue:
            return self.q.update(LEVEL, id, value)
        return self.q.update(*self.lane, id, value)

    def reserve(self, q: Any = None, **kw: Any) -> dq.Item:
        return (self.q if q is None else q).reserve(*self.lane, **kw)

    def values(self, q: Any = None) -> list:
        return [item.value for item in (self.q if q is None else q)]


def make_adapter(name: str, path: Any) -> Adapter:
    cls = {"queue": dq.Queue, "stack": dq.Stack, "priority": dq.PriorityQueue,
           "prefix": dq.PrefixQueue}[name]
    return Adapter(name, cls, path, lifo=cls is dq.Stack)


STRUCTURES = ["queue", "stack", "priority", "prefix"]
RELIABLE = ["queue", "priority", "prefix"]  # those with reserve/ack/nack


@pytest.fixture
def path(tmp_path):
    return tmp_path / "q"


@pytest.fixture(params=STRUCTURES)
def kind(request) -> str:
    return request.param


@pytest.fixture
def make(kind, path):
    """``make(**open_kwargs)`` -> an Adapter with ``.q`` open on ``path``; closed afterwards."""
    made: list[Adapter] = []

    def factory(**kw: Any) -> Adapter:
        adapter = make_adapter(kind, path)
        adapter.q = adapter.open(**kw)
        made.append(adapter)
        return adapter

    yield factory
    for adapter in made:
        adapter.q.close()


@pytest.fixture
def s(make) -> Adapter:
    """The default: an Adapter with default options."""
    return make()


@pytest.fixture
def tasks(tmp_path):
    """A TaskQueue in a fresh directory, closed after the test."""
    tq = dq.TaskQueue(tmp_path / "jobs")
    yield tq
    tq.close()
