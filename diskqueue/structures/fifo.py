"""``Queue`` (FIFO) and ``Stack`` (LIFO): one lane, read from either end.

Both use the same on-disk format, so a directory written by one opens as the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Optional

from .._checks import check_count, check_id, check_lease, check_timeout
from ..engine.api import Entry
from ..errors import Undecodable
from ..item import Item, items_of, make_item
from .handle import Handle, Reliable
from .stdlib import QueueFace

_LANE = b""
_new = tuple.__new__  # Item(...) without its keyword handling, on the hottest paths


class _Line(Handle, QueueFace):
    """A single run of items; ``_from_tail`` picks which end dequeues."""

    _kind = "queue"
    _accepts = ("queue",)
    _from_tail = False

    def _where(self, lane: bytes) -> tuple[None, None]:
        return None, None

    def _make(self, entry: Entry, value: Any) -> Item:
        return _new(Item, (entry[1], entry[2], value, None, None, entry[4]))  # type: ignore[no-any-return]

    def _add(self, value: Any) -> Item:
        seq, key = self._append(_LANE, self._encode(value))
        return make_item(seq, key, value)

    def _add_many(self, values: Iterable[Any]) -> list[Item]:
        values = list(values)
        if not values:
            return []
        seqs, item_keys = self._append_run(_LANE, values)
        return items_of(seqs, item_keys, values)

    def _remove(self, block: bool, timeout: Optional[float], raw: bool = False) -> Item:
        return self._pop(_LANE, False, self._from_tail, block, timeout, raw)

    def _remove_many(self, n: int, block: bool, timeout: Optional[float],
                     raw: bool = False) -> list[Item]:
        return self._take_run(_LANE, n, from_tail=self._from_tail, block=block,
                              timeout=timeout, raw=raw)

    def peek(self, *, raw: bool = False) -> Item:
        """The item the next dequeue/pop would return, left in place (``raw=True``: its
        value undecoded, as stored). ``Empty`` when there is none, ``Undecodable`` when
        the codec refuses it."""
        return self._item(self._engine.peek(self._ns, 0, from_tail=self._from_tail), raw)

    def peek_by_offset(self, offset: int, *, raw: bool = False) -> Item:
        """The item ``offset`` places from the head (Queue) or top (Stack), left in place.

        Raises ``Empty`` when there is no item, ``OutOfBounds`` past the last one,
        ``TypeError``/``ValueError`` for an ``offset`` that is not an int >= 0.
        """
        check_count("offset", offset)
        return self._item(self._engine.peek(self._ns, offset, from_tail=self._from_tail),
                          raw)

    def peek_by_id(self, id: int, *, raw: bool = False) -> Item:
        """The ready item with this ``id``, left in place.

        Raises ``Empty`` when there is no item, ``OutOfBounds`` when no ready item has that
        id (a reserved one is not ready).
        """
        return self._item(self._engine.get(self._ns, _LANE, check_id(id)), raw)

    def update(self, id: int, value: Any) -> Item:
        """Replace the value of a ready item, keeping its place and id.

        Raises ``Empty``/``OutOfBounds`` when no ready item has that id (a reserved one is
        not ready), ``TypeError`` when the codec cannot encode ``value``; nothing changes
        then.
        """
        seq, key = self._replace(_LANE, id, value)
        return make_item(seq, key, value)

    def __iter__(self) -> Iterator[Item]:
        """Every ready item in dequeue (Queue) or pop (Stack) order, left in place;
        ``Undecodable`` at an item that does not decode."""
        return self._scan(from_tail=self._from_tail)

    def _put_value(self, value: Any, block: bool, timeout: Optional[float]) -> None:
        self._append(_LANE, self._encode(value), block, timeout)

    def _get_value(self, block: bool, timeout: Optional[float]) -> Any:
        return self._remove(block, timeout).value


class Queue(_Line, Reliable):
    """A FIFO queue in a directory; also a drop-in for :class:`queue.Queue`."""

    def enqueue(self, value: Any) -> Item:
        """Append a value at the tail.

        Raises ``TypeError`` when the codec cannot encode ``value``, ``Full`` at
        ``maxsize``; nothing is stored then.
        """
        try:
            data = self._dumps(value)
        except Exception:
            data = self._encode(value)  # raises the TypeError that says why
        if self._sync:
            seq, key = self._append(_LANE, data)
        else:
            seq, key = self._engine.push_one(self._ns, _LANE, data, maxsize=self.maxsize)
        return _new(Item, (seq, key, value, None, None, 0))

    def enqueue_many(self, values: Iterable[Any]) -> list[Item]:
        """Append several values atomically: all of them, or none.

        Raises ``TypeError`` when the codec cannot encode one of them, ``Full`` when they
        would go over ``maxsize``; nothing is stored then.
        """
        return self._add_many(values)

    def dequeue(self, *, block: bool = False, timeout: Optional[float] = None,
                raw: bool = False) -> Item:
        """Remove and return the head; ``Empty`` if there is none (after waiting, if asked).

        A head the codec cannot decode raises ``Undecodable`` and stays the head;
        ``raw=True`` takes it anyway, its value the bytes as stored.
        """
        # The hot path, written out: the same as self._pop(_LANE, ...).
        timeout = check_timeout(block, timeout)
        values: Sequence[Any]
        if raw or self._plain:
            values, check = (), None
        else:
            values, check = self._decoding()
        try:
            entry = self._engine.pop_one(self._ns, _LANE, block=block, timeout=timeout,
                                         check=check)
        except Undecodable as exc:
            self._locate(exc, _LANE)
            raise
        if self._sync:
            self._engine.sync()
        if values:
            value = values[0]
        else:
            value = entry[3] if check is None else self._value(entry)
        return _new(Item, (entry[1], entry[2], value, None, None, 0))

    def dequeue_many(self, n: int, *, block: bool = False,
                     timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove up to ``n`` items from the head in one atomic step; if any of them is
        ``Undecodable``, none is taken. ``Empty`` when there is none (after waiting for
        one, with ``block``)."""
        return self._remove_many(n, block, timeout, raw)

    def reserve(self, *, lease: float = 30.0, block: bool = False,
                timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Take the head into the in-flight set until ``ack``, ``nack`` or the end of its
        ``lease`` (seconds, > 0); then it goes back to the head.

        Raises ``Empty`` when there is none (after waiting, with ``block``),
        ``Undecodable`` when the codec refuses it (it stays in place),
        ``TypeError``/``ValueError`` for a ``lease`` that is not a finite number > 0.
        """
        return self._take(1, _LANE, lease=check_lease(lease), block=block, timeout=timeout,
                          raw=raw)[0]

    def _lane_of(self, item: Item) -> bytes:
        return _LANE


class Stack(_Line):
    """A LIFO stack in a directory; also a drop-in for :class:`queue.LifoQueue`."""

    _from_tail = True

    def push(self, value: Any) -> Item:
        """Put a value on top.

        Raises ``TypeError`` when the codec cannot encode ``value``, ``Full`` at
        ``maxsize``; nothing is stored then.
        """
        return self._add(value)

    def push_many(self, values: Iterable[Any]) -> list[Item]:
        """Put several values on top atomically; the last one ends on top.

        Raises ``TypeError`` when the codec cannot encode one of them, ``Full`` when they
        would go over ``maxsize``; nothing is stored then.
        """
        return self._add_many(values)

    def pop(self, *, block: bool = False, timeout: Optional[float] = None,
            raw: bool = False) -> Item:
        """Remove and return the top item (``raw=True``: its value undecoded, the way to
        take an ``Undecodable`` one). ``Empty`` if there is none (after waiting, if
        asked); ``Undecodable`` when the codec refuses it (it stays on top)."""
        return self._pop(_LANE, False, True, block, timeout, raw)

    def pop_many(self, n: int, *, block: bool = False,
                 timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove up to ``n`` items from the top in one atomic step; if any of them is
        ``Undecodable``, none is taken. ``Empty`` when there is none (after waiting for
        one, with ``block``)."""
        return self._remove_many(n, block, timeout, raw)
