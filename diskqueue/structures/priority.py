"""``PriorityQueue``: one FIFO lane per priority level, levels in numeric order.

A level's lane key is the priority as a sign-flipped big-endian int64, so LevelDB's byte
order is numeric order; ``order`` ("asc" or "desc") is chosen per handle, not stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Optional

from .._checks import check_count, check_id, check_lease
from ..engine import keys
from ..engine.api import Entry
from ..item import Item, items_placed, make_item
from .handle import Handle, Reliable
from .stdlib import QueueFace


class PriorityQueue(Handle, Reliable, QueueFace):
    """Items ordered by an int priority, FIFO within one level; a drop-in for
    :class:`queue.PriorityQueue` whose items are ``(priority, value)`` tuples."""

    _kind = "priority"
    _accepts = ("priority",)

    def __init__(self, path: Any, *, order: str = "asc", codec: Any = "msgpack",
                 sync: bool = False, maxsize: int = 0, mode: int = 0o700,
                 connect_timeout: float = 10.0) -> None:
        """Open the priority queue in the directory ``path``, as every structure opens
        (``codec``, ``sync``, ``maxsize``, ``mode`` and ``connect_timeout`` as for
        ``Queue``); ``order="asc"`` dequeues the lowest priority first, ``"desc"`` the
        highest. The order belongs to the handle, not to the directory.

        Raises ``ValueError`` for another ``order``, and what opening any structure
        raises (``IncompatibleType``, ``Locked``, ``PermissionDenied``, ...).
        """
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        self.order = order
        self._desc = order == "desc"
        super().__init__(path, codec=codec, sync=sync, maxsize=maxsize, mode=mode,
                         connect_timeout=connect_timeout)

    def _where(self, lane: bytes) -> tuple[int, None]:
        return keys.lane_priority(lane), None

    def _make(self, entry: Entry, value: Any) -> Item:
        return make_item(entry[1], entry[2], value, keys.lane_priority(entry[0]), None,
                         entry[4])

    def _lane_of(self, item: Item) -> bytes:
        return keys.priority_lane(item.priority)

    def enqueue(self, priority: int, value: Any) -> Item:
        """Append a value at the tail of level ``priority``.

        Raises ``TypeError`` when ``priority`` is not an int or the codec cannot encode
        ``value``, ``ValueError`` when ``priority`` is outside the signed 64-bit range,
        ``Full`` at ``maxsize``; nothing is stored then.
        """
        lane = keys.priority_lane(priority)
        seq, key = self._append(lane, self._encode(value))
        return make_item(seq, key, value, priority)

    def enqueue_many(self, pairs: Iterable[tuple[int, Any]]) -> list[Item]:
        """Add ``(priority, value)`` pairs atomically: all of them, or none.

        Raises ``TypeError`` for an entry that is not a pair, a priority that is not an
        int or a value the codec cannot encode, ``ValueError`` for a priority outside the
        signed 64-bit range, ``Full`` when they would go over ``maxsize``; nothing is
        stored then.
        """
        pairs = list(pairs)
        entries = []
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError("enqueue_many takes (priority, value) pairs")
            entries.append((keys.priority_lane(pair[0]), self._encode(pair[1])))
        if not entries:
            return []
        placed = self._append_many(entries)
        return items_placed(placed, [v for _, v in pairs], [p for p, _ in pairs])

    def dequeue(self, *, block: bool = False, timeout: Optional[float] = None,
                raw: bool = False) -> Item:
        """Remove the first item of the first level (lowest with "asc"); ``raw=True``
        leaves its value undecoded (the way to take an ``Undecodable`` one).

        Raises ``Empty`` when there is none (after waiting, with ``block``),
        ``Undecodable`` when the codec refuses it (it stays in place).
        """
        return self._pop(None, self._desc, False, block, timeout, raw)

    def dequeue_many(self, n: int, *, block: bool = False,
                     timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove up to ``n`` items across levels, in dequeue order, atomically; if any of
        them is ``Undecodable``, none is taken. ``Empty`` when there is none (after
        waiting for one, with ``block``)."""
        if check_count("n", n) == 0:
            return []
        return self._take(n, None, desc=self._desc, block=block, timeout=timeout, raw=raw)

    def dequeue_by_priority(self, priority: int, *, block: bool = False,
                            timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Remove the first item of one level; ``Empty`` when it holds none (after
        waiting, with ``block``), ``Undecodable`` when the codec refuses the item."""
        lane = keys.priority_lane(priority)
        return self._pop(lane, False, False, block, timeout, raw)

    def reserve(self, *, lease: float = 30.0, block: bool = False,
                timeout: Optional[float] = None, raw: bool = False) -> Item:
        """Take the next item into the in-flight set until ``ack``, ``nack`` or the end
        of its ``lease`` (seconds, > 0); then it goes back to the front of its level.

        Raises ``Empty`` when there is none (after waiting, with ``block``),
        ``Undecodable`` when the codec refuses it (it stays in place).
        """
        return self._take(1, None, desc=self._desc, lease=check_lease(lease), block=block,
                          timeout=timeout, raw=raw)[0]

    def peek(self, *, raw: bool = False) -> Item:
        """The item the next ``dequeue`` would return, left in place; ``Empty`` when there
        is none."""
        return self._item(self._engine.peek(self._ns, 0, desc=self._desc), raw)

    def peek_by_offset(self, offset: int, *, raw: bool = False) -> Item:
        """The item ``offset`` places into the dequeue order, across levels, left in
        place; ``Empty`` when there is none, ``OutOfBounds`` past the last one."""
        check_count("offset", offset)
        return self._item(self._engine.peek(self._ns, offset, desc=self._desc), raw)

    def peek_by_priority_id(self, priority: int, id: int, *, raw: bool = False) -> Item:
        """The ready item with this ``id`` at level ``priority``, left in place.

        Raises ``Empty`` when the level holds nothing, ``OutOfBounds`` when no ready item
        of it has that id.
        """
        lane = keys.priority_lane(priority)
        return self._item(self._engine.get(self._ns, lane, check_id(id)), raw)

    def update(self, priority: int, id: int, value: Any) -> Item:
        """Replace the value of a ready item at level ``priority``, keeping its place and id.

        Raises ``Empty``/``OutOfBounds`` when no ready item of the level has that id, and
        ``TypeError`` when the codec cannot encode ``value``; nothing changes then.
        """
        seq, key = self._replace(keys.priority_lane(priority), id, value)
        return make_item(seq, key, value, priority)

    def length(self, priority: int) -> int:
        """Ready items at one level."""
        return self._engine.length(self._ns, keys.priority_lane(priority))

    def priorities(self) -> list[int]:
        """Non-empty levels in dequeue order."""
        return [keys.lane_priority(lane) for lane in self._engine.lanes(self._ns, desc=self._desc)]

    def __iter__(self) -> Iterator[Item]:
        """Every ready item in dequeue order, left in place; ``Undecodable`` at an item
        that does not decode."""
        return self._scan(desc=self._desc)

    # -- queue.PriorityQueue face ----------------------------------------------
    # A (priority, value) pair is stored as enqueue(priority, value), so both faces see
    # the same items. A bare int, or a longer tuple or list led by an int priority (a
    # tie-breaker, say), is stored whole in an envelope at that priority, and get()
    # hands it back exactly as it was put. Anything else has no priority a disk queue
    # could order by: a TypeError, and nothing is stored.
    def _put_value(self, value: Any, block: bool, timeout: Optional[float]) -> None:
        priority, payload = _put_entry(value)
        self._append(keys.priority_lane(priority), self._encode(payload), block, timeout)

    def _get_value(self, block: bool, timeout: Optional[float]) -> Any:
        item = self.dequeue(block=block, timeout=timeout)
        value = item.value
        if isinstance(value, dict) and len(value) == 1:
            if _ENVELOPE in value:
                whole = value[_ENVELOPE]
                return tuple(whole) if isinstance(whole, list) else whole
            if _LISTED in value:
                return list(value[_LISTED])
        return (item.priority, value)


_ENVELOPE = "__diskqueue_item__"  # a bare int or a tuple, as put
_LISTED = "__diskqueue_list__"  # a list, as put (a codec may turn tuples into lists)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _put_entry(value: Any) -> tuple[int, Any]:
    """The priority and the stored payload of what ``put`` was given."""
    if isinstance(value, tuple) and len(value) == 2 and _is_int(value[0]):
        return value[0], value[1]
    if _is_int(value):
        return value, {_ENVELOPE: value}
    if isinstance(value, (tuple, list)) and value and _is_int(value[0]):
        return value[0], {_LISTED if isinstance(value, list) else _ENVELOPE: value}
    led = isinstance(value, (tuple, list)) and bool(value)
    first = value[0] if led else value
    what = f"{type(first).__name__} {_short(first)}"
    if led:
        what = f"a {type(value).__name__} led by {what}"
    if isinstance(first, bool):
        what += " (bool is not a priority)"
    raise TypeError(
        "PriorityQueue.put takes an int priority, or a tuple or list whose first element "
        f"is an int priority, such as (1, value); not {what}. Nothing was stored; "
        "enqueue(priority, value) stores any value at a priority"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
