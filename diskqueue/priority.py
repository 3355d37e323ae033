"""``PriorityQueue``: one FIFO lane per priority level, levels in numeric order.

A level's lane key is the priority as a sign-flipped big-endian int64, so LevelDB's byte
order is numeric order; ``order`` ("asc" or "desc") is chosen per handle, not stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Optional

from . import engine as engine_mod
from . import keys
from .handle import Handle, Reliable, check_count, check_id, check_lease, check_timeout
from .item import Item, items_placed, items_taken, make_item
from .stdlib import QueueFace


class PriorityQueue(Handle, Reliable, QueueFace):
    """Items ordered by an int priority, FIFO within one level; a drop-in for
    :class:`queue.PriorityQueue` whose items are ``(priority, value)`` tuples."""

    _kind = "priority"
    _accepts = ("priority",)

    def __init__(self, path: Any, *, order: str = "asc", codec: Any = "msgpack",
                 sync: bool = False, maxsize: int = 0, connect_timeout: float = 10.0) -> None:
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        self.order = order
        self._desc = order == "desc"
        super().__init__(path, codec=codec, sync=sync, maxsize=maxsize,
                         connect_timeout=connect_timeout)

    def _item(self, entry: engine_mod.Entry) -> Item:
        lane, seq, key, data, attempts = entry
        return make_item(seq, key, self._loads(data), keys.lane_priority(lane), None, attempts)

    def _lane_of(self, item: Item) -> bytes:
        return keys.priority_lane(item.priority)

    def enqueue(self, priority: int, value: Any) -> Item:
        lane = keys.priority_lane(priority)
        seq, key = self._append(lane, self._encode(value))
        return make_item(seq, key, value, priority)

    def enqueue_many(self, pairs: Iterable[tuple[int, Any]]) -> list[Item]:
        """Add ``(priority, value)`` pairs atomically: all of them, or none."""
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

    def _take(self, n: int, lane: Optional[bytes], block: bool, timeout: Optional[float],
              lease: Optional[float] = None) -> list[Item]:
        check_timeout(block, timeout)
        entries = self._engine.take(self._ns, n, lane=lane, desc=self._desc, lease=lease,
                                    block=block, timeout=timeout)
        self._synced()
        return items_taken(entries, self._loads, keys.lane_priority)

    def dequeue(self, *, block: bool = False, timeout: Optional[float] = None) -> Item:
        """Remove the first item of the first level (lowest with "asc")."""
        check_timeout(block, timeout)
        entry = self._engine.pop_one(self._ns, None, self._desc, False, block, timeout)
        self._synced()
        return self._item(entry)

    def dequeue_many(self, n: int, *, block: bool = False,
                     timeout: Optional[float] = None) -> list[Item]:
        """Remove up to ``n`` items across levels, in dequeue order, atomically."""
        if check_count("n", n) == 0:
            return []
        return self._take(n, None, block, timeout)

    def dequeue_by_priority(self, priority: int, *, block: bool = False,
                            timeout: Optional[float] = None) -> Item:
        """Remove the first item of one level."""
        lane = keys.priority_lane(priority)
        check_timeout(block, timeout)
        entry = self._engine.pop_one(self._ns, lane, False, False, block, timeout)
        self._synced()
        return self._item(entry)

    def reserve(self, *, lease: float = 30.0, block: bool = False,
                timeout: Optional[float] = None) -> Item:
        """Take the next item into the in-flight set until ``ack``/``nack``/lease end."""
        return self._take(1, None, block, timeout, check_lease(lease))[0]

    def peek(self) -> Item:
        return self._item(self._engine.peek(self._ns, 0, desc=self._desc))

    def peek_by_offset(self, offset: int) -> Item:
        """The item ``offset`` places into the dequeue order, across levels."""
        check_count("offset", offset)
        return self._item(self._engine.peek(self._ns, offset, desc=self._desc))

    def peek_by_priority_id(self, priority: int, id: int) -> Item:
        lane = keys.priority_lane(priority)
        return self._item(self._engine.get(self._ns, lane, check_id(id)))

    def update(self, priority: int, id: int, value: Any) -> Item:
        lane = keys.priority_lane(priority)
        seq = check_id(id)
        data = self._encode(value)
        key = self._engine.update(self._ns, lane, seq, data)
        self._synced()
        return make_item(seq, key, value, priority)

    def length(self, priority: int) -> int:
        """Ready items at one level."""
        return self._engine.length(self._ns, keys.priority_lane(priority))

    def priorities(self) -> list[int]:
        """Non-empty levels in dequeue order."""
        return [keys.lane_priority(lane) for lane in self._engine.lanes(self._ns, self._desc)]

    def __iter__(self) -> Iterator[Item]:
        return self._scan(desc=self._desc)

    # -- queue.PriorityQueue face ----------------------------------------------
    # A (priority, value) pair is stored as enqueue(priority, value), so both faces see
    # the same items. Anything else queue.PriorityQueue accepts (a bare int, a 3-tuple
    # with a tie-breaker, a string) is stored whole in an envelope, at its leading int
    # (or 0), and get() hands it back exactly as it was put.
    def _put_value(self, value: Any, block: bool, timeout: Optional[float]) -> None:
        if _is_pair(value):
            priority, payload = value
        else:
            priority, payload = _leading_int(value), {_ENVELOPE: value}
        self._append(keys.priority_lane(priority), self._encode(payload), block, timeout)

    def _get_value(self, block: bool, timeout: Optional[float]) -> Any:
        item = self.dequeue(block=block, timeout=timeout)
        value = item.value
        if isinstance(value, dict) and len(value) == 1 and _ENVELOPE in value:
            whole = value[_ENVELOPE]
            return tuple(whole) if isinstance(whole, list) else whole
        return (item.priority, value)


_ENVELOPE = "__diskqueue_item__"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and _is_int(value[0])


def _leading_int(value: Any) -> int:
    if _is_int(value):
        return int(value)
    if isinstance(value, (tuple, list)) and value and _is_int(value[0]):
        return int(value[0])
    return 0
