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


def make_items(rows: Any, loads: Any = None, priority: Any = None,
               prefix: bytes | None = None) -> list[Item]:
    """Items of ``(id, key, value, attempts)`` rows in one loop (batches are hot too).

    ``loads`` decodes each value when given; ``priority`` may be a function of the row
    index (for batches that span levels) or a plain value.
    """
    new, put = _new, _set
    out = []
    for i, (id_, key, value, attempts) in enumerate(rows):
        item = new(Item)
        put(item, "__dict__", {
            "id": id_, "key": key, "value": loads(value) if loads else value,
            "priority": priority(i) if callable(priority) else priority,
            "prefix": prefix, "attempts": attempts,
        })
        out.append(item)
    return out
