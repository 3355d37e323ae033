"""The value every structure hands back."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

from .codecs import _identity

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


def items_taken(entries: Any, loads: Any, priority_of: Any = None,
                prefix: bytes | None = None) -> list[Item]:
    """Items of engine entries ``(lane, seq, key, data, attempts)``."""
    if not entries:
        return []
    lanes, seqs, keys, datas, attempts = zip(*entries, strict=True)
    return items_of(seqs, keys, datas if loads is _identity else map(loads, datas),
                    None if priority_of is None else map(priority_of, lanes), prefix, attempts)


def items_run(seqs: Any, pairs: Any, loads: Any, prefix: bytes | None = None) -> list[Item]:
    """Items of one lane's run: its seqs and ``(key, data)`` pairs."""
    new = _tuple_new
    if loads is _identity:
        return [new(Item, (seq, key, data, None, prefix, 0))
                for seq, (key, data) in zip(seqs, pairs, strict=True)]
    return [new(Item, (seq, key, loads(data), None, prefix, 0))
            for seq, (key, data) in zip(seqs, pairs, strict=True)]


def items_placed(placed: Any, values: Any, priorities: Any = None,
                 prefix: bytes | None = None) -> list[Item]:
    """Items of freshly stored values: ``placed`` holds their ``(seq, key)``."""
    if not placed:
        return []
    seqs, keys = zip(*placed, strict=True)
    return items_of(seqs, keys, values, priorities, prefix)
