"""In-memory pointers of one namespace: lanes of sequence numbers, nothing else.

A *lane* is one FIFO run of items: the single run of a Queue, one priority level, or
one prefix. Items ``head <= seq < tail`` are ready in order; items put back at the front
by ``nack`` (or left reserved by a dead process) sit below ``head`` in ``front``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain

from sortedcontainers import SortedList, SortedSet

from . import keys


class Lane:
    """The pointers of one lane: ``head <= seq < tail`` ready, ``front`` put back."""

    __slots__ = ("head", "tail", "front", "prefix", "pointer_key")

    def __init__(self, head: int = 1, tail: int = 1, prefix: bytes = b"",
                 pointer_key: bytes = b"") -> None:
        self.head = head
        self.tail = tail
        self.front: SortedList | None = None  # ready seqs below head, oldest first
        # Every item key of the lane is ``prefix + seq``; kept to spare the hot paths.
        self.prefix = prefix
        self.pointer_key = pointer_key

    @property
    def ready(self) -> int:
        """How many items of the lane are ready."""
        return self.tail - self.head + (len(self.front) if self.front else 0)

    def holds(self, seq: int) -> bool:
        """True when ``seq`` is a ready item of this lane."""
        return self.head <= seq < self.tail or bool(self.front and seq in self.front)

    def seqs(self, from_tail: bool, after: int | None = None) -> Iterator[int]:
        """Ready seqs in dequeue order (LIFO when ``from_tail``), after a cursor seq."""
        below = self.front
        front: Iterable[int] = below or ()
        if not from_tail:
            lo = 0 if after is None else after + 1
            if below:
                front = below.irange(minimum=lo)
            return chain(front, range(max(self.head, lo), self.tail))
        hi = self.tail if after is None else min(self.tail, after)
        if below:
            front = below.irange(maximum=hi - 1, reverse=True)
        return chain(range(hi - 1, self.head - 1, -1), front)

    def at_offset(self, offset: int, from_tail: bool) -> int:
        """The seq ``offset`` places into this lane's dequeue order (offset < ready)."""
        nfront = len(self.front) if self.front else 0
        if not from_tail:
            if offset < nfront:
                return self.front[offset]  # type: ignore[index]
            return self.head + offset - nfront
        run = self.tail - self.head
        if offset < run:
            return self.tail - 1 - offset
        return self.front[nfront - 1 - (offset - run)]  # type: ignore[index]

    def add_front(self, seq: int) -> None:
        """Put ``seq`` back at the front of the lane (it stays below ``head``)."""
        if self.front is None:
            self.front = SortedList()
        self.front.add(seq)

    def consumed_runs(self, reserved: Iterable[int], most: int = 8) -> list[tuple[int, int]]:
        """Seq ranges ``[lo, hi)`` below ``head`` that hold consumed keys only: the gaps
        between the live items below it (put back at the front, or reserved), at most
        ``most`` of them, the widest. A reserved item at the head must not stop the
        compaction of everything consumed after it (a running task holds just that)."""
        live = sorted({*(self.front or ()), *(s for s in reserved if s < self.head)})
        gaps = []
        low = 0
        for seq in live:
            if seq > low:
                gaps.append((low, seq))
            low = seq + 1
        if self.head > low:
            gaps.append((low, self.head))
        if len(gaps) > most:
            # Few wide ranges: LevelDB compacts whole files per range, so many narrow
            # ones would rewrite the same files again and again.
            gaps = sorted(sorted(gaps, key=lambda g: g[0] - g[1])[:most])
        return gaps


class Space:
    """The pointers of one namespace (one structure) inside a directory."""

    __slots__ = (
        "ns", "item_prefix", "pointer_prefix", "aside_prefix", "lanes", "active",
        "aside", "reserved", "ready", "unfinished", "dirty", "dirty_top",
    )

    def __init__(self, ns: bytes) -> None:
        nsb = keys.ns_bytes(ns)
        self.ns = ns
        self.item_prefix = keys.ITEM + nsb
        self.pointer_prefix = keys.POINTER + nsb
        self.aside_prefix = keys.ASIDE + nsb
        self.lanes: dict[bytes, Lane] = {}
        self.active: SortedSet = SortedSet()  # lanes with ready items, in key order
        self.aside: dict[tuple[bytes, int], int] = {}  # ready items reserved before: attempts
        self.reserved: dict[tuple[bytes, int], int] = {}  # in flight: attempts
        self.ready = 0
        self.unfinished = 0
        self.dirty: set[bytes] = set()  # lanes with deletes since the last compaction
        self.dirty_top: set[bytes] = set()  # those of them popped at the tail (a Stack)

    def lane(self, lane: bytes) -> Lane:
        """The pointers of ``lane``, made empty on first use."""
        ln = self.lanes.get(lane)
        if ln is None:
            ln = self.lanes[lane] = Lane(1, 1, self.item_prefix + lane,
                                         self.pointer_prefix + lane)
        return ln

    def item_key(self, lane: bytes, seq: int) -> bytes:
        """The store key of item ``seq`` of ``lane``."""
        return self.item_prefix + lane + seq.to_bytes(8, "big")

    def aside_key(self, lane: bytes, seq: int) -> bytes:
        """The store key of the aside record (attempts, holder) of item ``seq``."""
        return self.aside_prefix + lane + seq.to_bytes(8, "big")

    def pointer(self, lane: bytes, ln: Lane) -> tuple[bytes, bytes]:
        """The ``(key, value)`` of the pointer record of ``lane`` holding ``ln``'s head
        and tail."""
        return self.pointer_prefix + lane, keys.POINTERS.pack(ln.head, ln.tail)

    def recount(self, lane: bytes, ln: Lane) -> None:
        """Keep ``active`` in step after a lane's ready count changed."""
        if ln.ready:
            self.active.add(lane)
        else:
            self.active.discard(lane)

    def lane_order(self, desc: bool) -> Iterator[bytes]:
        """The lanes with ready items in key order (``desc``: reversed)."""
        return reversed(self.active) if desc else iter(self.active)
