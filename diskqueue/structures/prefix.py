"""``PrefixQueue``: one FIFO per prefix, all in one directory.

A lane key is the prefix's length (4 bytes) and then its bytes, so ``"a"``, ``"a:"``
and ``"a\\x00b"`` can never share keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Optional

from .._checks import check_count, check_id, check_lease
from ..engine import keys
from ..engine.api import Entry
from ..item import Item, items_of, make_item
from .handle import Handle, Reliable


class PrefixQueue(Handle, Reliable):
    """Many FIFO queues, one per ``str`` or ``bytes`` prefix, in one directory."""

    _kind = "prefix"
    _accepts = ("prefix",)

    def _where(self, lane: bytes) -> tuple[None, bytes]:
        return None, keys.lane_prefix(lane)

    def _make(self, entry: Entry, value: Any) -> Item:
        return make_item(entry[1], entry[2], value, None, keys.lane_prefix(entry[0]),
                         entry[4])

    def _lane_of(self, item: Item) -> bytes:
        return keys.prefix_lane(item.prefix)

    def enqueue(self, prefix: str | bytes, value: Any) -> Item:
        """Append a value at the tail of one prefix's queue.

        Raises ``TypeError`` when ``prefix`` is neither ``str`` nor ``bytes`` or the codec
        cannot encode ``value``, ``Full`` at ``maxsize``; nothing is stored then.
        """
        lane = keys.prefix_lane(prefix)
        seq, key = self._append(lane, self._encode(value))
        return make_item(seq, key, value, None, keys.lane_prefix(lane))

    def enqueue_many(self, prefix: str | bytes, values: Iterable[Any]) -> list[Item]:
        """Append several values to one prefix atomically: all of them, or none.

        Raises ``TypeError`` for a bad ``prefix`` or a value the codec cannot encode,
        ``Full`` when they would go over ``maxsize``; nothing is stored then.
        """
        lane = keys.prefix_lane(prefix)
        values = list(values)
        if not values:
            return []
        seqs, item_keys = self._append_run(lane, values)
        return items_of(seqs, item_keys, values, prefix=keys.lane_prefix(lane))

    def dequeue(self, prefix: str | bytes, *, block: bool = False,
                timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Remove the first item of one prefix; ``raw=True`` leaves its value undecoded
        (the way to take an ``Undecodable`` one).

        Raises ``Empty`` when the prefix holds nothing (after waiting, with ``block``),
        ``Undecodable`` when the codec refuses the item (it stays in place).
        """
        return self._pop(keys.prefix_lane(prefix), False, False, block, timeout, raw)

    def dequeue_many(self, prefix: str | bytes, n: int, *, block: bool = False,
                     timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove up to ``n`` items of one prefix atomically; if any of them is
        ``Undecodable``, none is taken. ``Empty`` when the prefix holds nothing (after
        waiting for one, with ``block``)."""
        lane = keys.prefix_lane(prefix)
        return self._take_run(lane, n, block=block, timeout=timeout, raw=raw)

    def reserve(self, prefix: str | bytes, *, lease: float = 30.0, block: bool = False,
                timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Take the first item of one prefix into the in-flight set until ``ack``,
        ``nack`` or the end of its ``lease`` (seconds, > 0).

        Raises ``Empty`` when the prefix holds nothing (after waiting, with ``block``),
        ``Undecodable`` when the codec refuses the item (it stays in place).
        """
        lane = keys.prefix_lane(prefix)
        return self._take(1, lane, lease=check_lease(lease), block=block, timeout=timeout,
                          raw=raw)[0]

    def peek(self, prefix: str | bytes, *, raw: bool = False) -> Item:
        """The item the next ``dequeue(prefix)`` would return, left in place; ``Empty``
        when the prefix holds nothing."""
        return self._item(self._engine.peek(self._ns, 0, lane=keys.prefix_lane(prefix)), raw)

    def peek_by_offset(self, prefix: str | bytes, offset: int, *, raw: bool = False) -> Item:
        """The item ``offset`` places from the head of one prefix, left in place.

        Raises ``Empty`` when the prefix holds nothing, ``OutOfBounds`` past its last item.
        """
        lane = keys.prefix_lane(prefix)
        check_count("offset", offset)
        return self._item(self._engine.peek(self._ns, offset, lane=lane), raw)

    def peek_by_id(self, prefix: str | bytes, id: int, *, raw: bool = False) -> Item:
        """The ready item with this ``id`` in one prefix, left in place.

        Raises ``Empty`` when the prefix holds nothing, ``OutOfBounds`` when no ready item
        of it has that id.
        """
        lane = keys.prefix_lane(prefix)
        return self._item(self._engine.get(self._ns, lane, check_id(id)), raw)

    def update(self, prefix: str | bytes, id: int, value: Any) -> Item:
        """Replace the value of a ready item of one prefix, keeping its place and id.

        Raises ``Empty``/``OutOfBounds`` when no ready item of the prefix has that id, and
        ``TypeError`` when the codec cannot encode ``value``; nothing changes then.
        """
        lane = keys.prefix_lane(prefix)
        seq, key = self._replace(lane, id, value)
        return make_item(seq, key, value, None, keys.lane_prefix(lane))

    def length(self, prefix: str | bytes) -> int:
        """Ready items of one prefix (``len(q)`` counts every prefix)."""
        return self._engine.length(self._ns, keys.prefix_lane(prefix))

    def prefixes(self) -> list[bytes]:
        """Prefixes holding ready items, sorted by their bytes."""
        return sorted(keys.lane_prefix(lane) for lane in self._engine.lanes(self._ns))

    def __iter__(self) -> Iterator[Item]:
        """Every ready item, left in place: prefix by prefix in the order of
        ``prefixes()``, each in dequeue order. ``Undecodable`` at an item that does not
        decode."""
        for prefix in self.prefixes():
            yield from self._scan(lane=keys.prefix_lane(prefix))
