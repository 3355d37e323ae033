"""The value every structure hands back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Item:
    """One stored item as it was read: frozen, so it can be kept and compared.

    ``id`` counts 1, 2, 3… per queue, per priority level or per prefix; ``key`` is the
    LevelDB key; ``attempts`` is how many times it was reserved (0 unless it came from
    ``reserve``).
    """

    id: int
    key: bytes
    value: Any
    priority: int | None = None
    prefix: bytes | None = None
    attempts: int = 0


_new = object.__new__
_set = object.__setattr__


def make_item(id: int, key: bytes, value: Any, priority: int | None = None,
              prefix: bytes | None = None, attempts: int = 0) -> Item:
    """Build an Item at half the cost of the frozen ``__init__`` (a hot path)."""
    item = _new(Item)
    _set(item, "__dict__", {"id": id, "key": key, "value": value, "priority": priority,
                            "prefix": prefix, "attempts": attempts})
    return item


def items_taken(entries: Any, loads: Any, priority_of: Any = None,
                prefix: bytes | None = None) -> list[Item]:
    """Items of engine entries ``(lane, seq, key, data, attempts)`` in one loop."""
    new, put = _new, _set
    out: list[Item] = []
    append = out.append
    if priority_of is None:
        for _, seq, key, data, attempts in entries:
            item = new(Item)
            put(item, "__dict__", {"id": seq, "key": key, "value": loads(data),
                                   "priority": None, "prefix": prefix, "attempts": attempts})
            append(item)
    else:
        for lane, seq, key, data, attempts in entries:
            item = new(Item)
            put(item, "__dict__", {"id": seq, "key": key, "value": loads(data),
                                   "priority": priority_of(lane), "prefix": prefix,
                                   "attempts": attempts})
            append(item)
    return out


def items_placed(placed: Any, values: Any, priorities: Any = None,
                 prefix: bytes | None = None) -> list[Item]:
    """Items of freshly stored values: ``placed`` holds their ``(seq, key)``."""
    new, put = _new, _set
    out: list[Item] = []
    append = out.append
    prios = priorities if priorities is not None else [None] * len(values)
    for (seq, key), value, priority in zip(placed, values, prios, strict=True):
        item = new(Item)
        put(item, "__dict__", {"id": seq, "key": key, "value": value, "priority": priority,
                               "prefix": prefix, "attempts": 0})
        append(item)
    return out
