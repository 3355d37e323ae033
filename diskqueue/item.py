"""The value every structure hands back."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

_tuple_new = tuple.__new__


@dataclass(frozen=True, init=False, eq=False)
class Item(tuple):  # type: ignore[type-arg]
    """One stored item as it was read: frozen, so it can be kept and compared.

    ``id`` counts 1, 2, 3… per queue, per priority level or per prefix; ``key`` is the
    LevelDB key; ``attempts`` is how many times it was reserved (0 unless it came from
    ``reserve``).

    It is a frozen dataclass (``dataclasses.replace``, ``asdict`` and ``fields`` work)
    whose fields live in a tuple: every dequeue builds one, and a tuple is built in C
    at a third of the cost of an instance dict.
    """

    __slots__ = ()

    id: int
    key: bytes
    value: Any
    priority: int | None = None
    prefix: bytes | None = None
    attempts: int = 0

    def __new__(cls, id: int, key: bytes, value: Any, priority: int | None = None,
                prefix: bytes | None = None, attempts: int = 0) -> Item:
        return _tuple_new(cls, (id, key, value, priority, prefix, attempts))

    def __getnewargs__(self) -> tuple[Any, ...]:  # pickle and copy
        return tuple(self)

    # Equal only to an Item, as a dataclass is; a plain tuple's own == must not answer.
    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return tuple.__eq__(self, other)  # type: ignore[no-any-return]
        return False if isinstance(other, tuple) else NotImplemented

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__


# The dataclass decorator left the defaults as class attributes; the fields read the tuple.
for _i, _name in enumerate(Item.__dataclass_fields__):
    setattr(Item, _name, property(itemgetter(_i), doc=f"The item's {_name}."))
del _i, _name


def make_item(id: int, key: bytes, value: Any, priority: int | None = None,
              prefix: bytes | None = None, attempts: int = 0) -> Item:
    """Build an Item without the keyword handling of ``Item(...)`` (a hot path)."""
    return _tuple_new(Item, (id, key, value, priority, prefix, attempts))  # type: ignore[no-any-return]


def items_of(seqs: Any, keys: Any, values: Any, priorities: Any = None,
             prefix: bytes | None = None, attempts: Any = None) -> list[Item]:
    """Items of parallel sequences, built in one C-level pass (``None``: the default)."""
    return list(map(_tuple_new, repeat(Item), zip(
        seqs, keys, values,
        repeat(None) if priorities is None else priorities,
        repeat(prefix),
        repeat(0) if attempts is None else attempts,
    )))


def items_run(seqs: Any, pairs: Any, values: Any = None, priority: int | None = None,
              prefix: bytes | None = None) -> list[Item]:
    """Items of one lane's run: its seqs, ``(key, data)`` pairs and the values decoded
    from the data (``None``: the data as it is)."""
    new = _tuple_new
    if values is None:
        return [new(Item, (seq, key, data, priority, prefix, 0))
                for seq, (key, data) in zip(seqs, pairs, strict=True)]
    return [new(Item, (seq, key, value, priority, prefix, 0))
            for seq, (key, _), value in zip(seqs, pairs, values, strict=True)]


def items_placed(placed: Any, values: Any, priorities: Any = None,
                 prefix: bytes | None = None) -> list[Item]:
    """Items of freshly stored values: ``placed`` holds their ``(seq, key)``."""
    if not placed:
        return []
    seqs, keys = zip(*placed, strict=True)
    return items_of(seqs, keys, values, priorities, prefix)
