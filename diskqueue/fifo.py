"""``Queue`` (FIFO) and ``Stack`` (LIFO): one lane, read from either end.

Both use the same on-disk format, so a directory written by one opens as the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Optional

from . import engine as engine_mod
from .handle import Handle, Reliable, check_count, check_id, check_lease, check_timeout
from .item import Item, items_of, items_run, make_item
from .stdlib import QueueFace

_LANE = b""
_new = tuple.__new__  # Item(...) without its keyword handling, on the hottest paths


class _Line(Handle, QueueFace):
    """A single run of items; ``_from_tail`` picks which end dequeues."""

    _kind = "queue"
    _accepts = ("queue",)
    _from_tail = False

    def _item(self, entry: engine_mod.Entry) -> Item:
        _, seq, key, data, attempts = entry
        return make_item(seq, key, self._loads(data), None, None, attempts)

    def _add(self, value: Any) -> Item:
        seq, key = self._append(_LANE, self._encode(value))
        return make_item(seq, key, value)

    def _add_many(self, values: Iterable[Any]) -> list[Item]:
        values = list(values)
        if not values:
            return []
        seqs, item_keys = self._append_run(_LANE, values)
        return items_of(seqs, item_keys, values)

    def _remove(self, block: bool, timeout: Optional[float]) -> Item:
        timeout = check_timeout(block, timeout)
        lane, seq, key, data, _ = self._engine.pop_one(
            self._ns, _LANE, False, self._from_tail, block, timeout
        )
        if self._sync:
            self._engine.sync()
        return _new(Item, (seq, key, self._loads(data), None, None, 0))

    def _remove_many(self, n: int, block: bool, timeout: Optional[float]) -> list[Item]:
        check_count("n", n)
        timeout = check_timeout(block, timeout)
        if n == 0:
            return []
        seqs, pairs = self._engine.take_run(self._ns, _LANE, n, self._from_tail, block,
                                            timeout)
        self._synced()
        return items_run(seqs, pairs, self._loads)

    def peek(self) -> Item:
        """The item the next dequeue/pop would return, left in place."""
        return self._item(self._engine.peek(self._ns, 0, from_tail=self._from_tail))

    def peek_by_offset(self, offset: int) -> Item:
        """The item ``offset`` places from the head (Queue) or top (Stack)."""
        check_count("offset", offset)
        return self._item(self._engine.peek(self._ns, offset, from_tail=self._from_tail))

    def peek_by_id(self, id: int) -> Item:
        return self._item(self._engine.get(self._ns, _LANE, check_id(id)))

    def update(self, id: int, value: Any) -> Item:
        """Replace the value of a ready item, keeping its place and id."""
        seq = check_id(id)
        data = self._encode(value)
        key = self._engine.update(self._ns, _LANE, seq, data)
        self._synced()
        return make_item(seq, key, value)

    def __iter__(self) -> Iterator[Item]:
        return self._scan(from_tail=self._from_tail)

    def _put_value(self, value: Any, block: bool, timeout: Optional[float]) -> None:
        self._append(_LANE, self._encode(value), block, timeout)

    def _get_value(self, block: bool, timeout: Optional[float]) -> Any:
        return self._remove(block, timeout).value


class Queue(_Line, Reliable):
    """A FIFO queue in a directory; also a drop-in for :class:`queue.Queue`."""

    def enqueue(self, value: Any) -> Item:
        """Append a value at the tail."""
        try:
            data = self._dumps(value)
        except Exception:
            data = self._encode(value)  # raises the TypeError that says why
        if self._sync:
            seq, key = self._append(_LANE, data)
        else:
            seq, key = self._engine.push_one(self._ns, _LANE, data, self.maxsize)
        return _new(Item, (seq, key, value, None, None, 0))

    def enqueue_many(self, values: Iterable[Any]) -> list[Item]:
        """Append several values atomically: all of them, or none."""
        return self._add_many(values)

    def dequeue(self, *, block: bool = False, timeout: Optional[float] = None) -> Item:
        """Remove and return the head; ``Empty`` if there is none (after waiting, if asked)."""
        timeout = check_timeout(block, timeout)
        lane, seq, key, data, _ = self._engine.pop_one(self._ns, _LANE, False, False, block,
                                                        timeout)
        if self._sync:
            self._engine.sync()
        return _new(Item, (seq, key, self._loads(data), None, None, 0))

    def dequeue_many(self, n: int, *, block: bool = False,
                     timeout: Optional[float] = None) -> list[Item]:
        """Remove up to ``n`` items from the head in one atomic step."""
        return self._remove_many(n, block, timeout)

    def reserve(self, *, lease: float = 30.0, block: bool = False,
                timeout: Optional[float] = None) -> Item:
        """Take the head into the in-flight set until ``ack``, ``nack`` or the lease ends."""
        lease = check_lease(lease)
        timeout = check_timeout(block, timeout)
        entries = self._engine.take(self._ns, 1, lane=_LANE, lease=lease, block=block,
                                    timeout=timeout)
        self._synced()
        return self._item(entries[0])

    def _lane_of(self, item: Item) -> bytes:
        return _LANE


class Stack(_Line):
    """A LIFO stack in a directory; also a drop-in for :class:`queue.LifoQueue`."""

    _from_tail = True

    def push(self, value: Any) -> Item:
        """Put a value on top."""
        return self._add(value)

    def push_many(self, values: Iterable[Any]) -> list[Item]:
        """Put several values on top atomically; the last one ends on top."""
        return self._add_many(values)

    def pop(self, *, block: bool = False, timeout: Optional[float] = None) -> Item:
        """Remove and return the top item."""
        return self._remove(block, timeout)

    def pop_many(self, n: int, *, block: bool = False,
                 timeout: Optional[float] = None) -> list[Item]:
        """Remove up to ``n`` items from the top in one atomic step."""
        return self._remove_many(n, block, timeout)
