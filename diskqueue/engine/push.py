"""Appending: every push writes its items and the tail pointers they move in one batch,
and only then moves the pointers in memory, so a failed write changes nothing."""

from __future__ import annotations

import time
from typing import Optional

from ..errors import Full
from . import keys
from .api import Receipt
from .core import Core, deadline
from .lanes import Lane, Space
from .records import RecordOps, plan_records, receipt_put, record_key

_pack = keys.POINTERS.pack


class Pushes(Core):
    """The engine's appends: push_one, push, push_run, push_unless, push_durable.

    Each raises ``Closed`` when the engine is closed, ``Full`` when ``maxsize`` items
    are ready and there is no room in time, and ``DiskQueueError`` when the
    write fails (then nothing changed).
    """

    def _roomy(self, ns: bytes, n: int, maxsize: int, block: bool,
               timeout: Optional[float]) -> Space:
        """The space of ``ns`` once it has room for ``n`` more items (lock held)."""
        if self.closed or self.forked:  # _check() and _space() spelled out: every push
            self._refuse()
        sp = self._spaces.get(ns) or self._space(ns)
        if maxsize:
            self._wait_room(sp, n, maxsize, block, timeout)
        return sp

    def _wait_room(self, sp: Space, n: int, maxsize: int, block: bool,
                   timeout: Optional[float]) -> None:
        if maxsize <= 0 or sp.ready + n <= maxsize:
            return
        if n > maxsize or not block:
            raise Full(f"{self.path} holds {sp.ready} items; maxsize is {maxsize}")
        end = deadline(block, timeout)
        while sp.ready + n > maxsize:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise Full(f"{self.path} stayed full for {timeout} s")
            self._sleep(True, remaining, sp.ns)
            self._check()

    def push_one(self, ns: bytes, lane: bytes, data: bytes, *, maxsize: int = 0,
                 block: bool = False, timeout: Optional[float] = None,
                 receipt: Optional[Receipt] = None) -> tuple[int, bytes]:
        """Append one item to a lane; return its seq and key. ``receipt``: a record of
        the result written in the same batch (a client's request, repeatable)."""
        with self._lock, self._interrupts:
            # _roomy() spelled out: this is the hot path of a single put.
            if self.closed or self.forked:
                self._refuse()
            sp = self._spaces.get(ns) or self._space(ns)
            if maxsize:
                self._wait_room(sp, 1, maxsize, block, timeout)
            ln = sp.lanes.get(lane) or sp.lane(lane)
            seq = ln.tail
            key = ln.prefix + seq.to_bytes(8, "big")
            self._store.write2(key, data, ln.pointer_key, _pack(ln.head, seq + 1),
                               None if receipt is None else receipt_put(receipt, (seq, key)))
            self._pushed_one(sp, lane, ln, seq)
            return seq, key

    def _pushed_one(self, sp: Space, lane: bytes, ln: Lane, seq: int) -> None:
        """Move the pointers in memory after item ``seq`` was written at the tail of
        ``lane`` (lock held)."""
        ln.tail = seq + 1
        sp.ready += 1
        sp.unfinished += 1
        if seq == ln.head and not ln.front:  # the lane was empty
            sp.active.add(lane)
        if self._readers or self._watchers:
            self._ready(1)

    def push(self, ns: bytes, entries: list[tuple[bytes, bytes]], *, maxsize: int = 0,
             block: bool = False, timeout: Optional[float] = None,
             records: RecordOps = (), receipt: Optional[Receipt] = None
             ) -> list[tuple[int, bytes]]:
        """Append ``(lane, data)`` entries atomically: all of them land, or none.

        ``records`` are record writes (see :meth:`write_records`) made in the same batch,
        and so is ``receipt`` (see :meth:`push_one`).
        """
        with self._lock, self._interrupts:
            # _roomy() spelled out, as in push_one: a single job's enqueue comes here
            if self.closed or self.forked:
                self._refuse()
            sp = self._spaces.get(ns) or self._space(ns)
            if maxsize:
                self._wait_room(sp, len(entries), maxsize, block, timeout)
            if len(entries) == 1 and receipt is None:  # a single job's enqueue
                return [self._push_single(sp, entries[0], records)]
            return self._push(sp, entries, records, receipt)

    def _push_single(self, sp: Space, entry: tuple[bytes, bytes], records: RecordOps
                     ) -> tuple[int, bytes]:
        """:meth:`_push` of one entry, without the bookkeeping of many lanes: the item,
        its lane's pointer and ``records`` in one batch, then the pointers moved in memory
        (lock held)."""
        lane, data = entry
        ln = sp.lanes.get(lane) or sp.lane(lane)
        seq = ln.tail
        key = ln.prefix + seq.to_bytes(8, "big")
        pointer = _pack(ln.head, seq + 1)
        if type(records) is list and len(records) == 1 and records[0][2] is not None:
            # a job and its record: the lightest write
            rns, rkey, value = records[0]
            self._store.write2(key, data, ln.pointer_key, pointer, (record_key(rns, rkey), value))
        else:
            puts: list[tuple[bytes, bytes]] = []
            deletes = plan_records(records, puts)
            self._store.write([(key, data), (ln.pointer_key, pointer), *puts], deletes)
        self._pushed_one(sp, lane, ln, seq)
        return seq, key

    def push_run(self, ns: bytes, lane: bytes, datas: list[bytes], *, maxsize: int = 0,
                 block: bool = False, timeout: Optional[float] = None,
                 receipt: Optional[Receipt] = None) -> tuple[int, list[bytes]]:
        """Append items to one lane atomically; return the first seq (the rest follow)
        and the keys (``receipt`` as :meth:`push_one`)."""
        with self._lock, self._interrupts:
            sp = self._roomy(ns, len(datas), maxsize, block, timeout)
            ln = sp.lane(lane)
            first, n = ln.tail, len(datas)
            item_keys = keys.item_keys(ln.prefix, first, n)
            extra = () if receipt is None else (receipt_put(receipt, (first, item_keys)),)
            self._store.write_run(item_keys, datas, ln.pointer_key, _pack(ln.head, first + n),
                                  extra)
            self._apply_push(sp, {lane: first + n}, n)
            return first, item_keys

    def push_unless(self, ns: bytes, entries: list[tuple[bytes, bytes]],
                    guard: tuple[bytes, bytes], *, records: RecordOps = ()) -> Optional[bytes]:
        """``push`` unless the record ``guard`` (ns, key) exists: then return its value.

        The check and the push happen under one lock, so two callers racing with the
        same guard never both push (the task layer's ``unique_key``).
        """
        with self._lock, self._interrupts:
            self._check()
            existing = self._store.get(record_key(*guard))
            if existing is not None:
                return existing
            self._push(self._space(ns), entries, records)
            return None

    def _push(self, sp: Space, entries: list[tuple[bytes, bytes]], records: RecordOps,
              receipt: Optional[Receipt] = None) -> list[tuple[int, bytes]]:
        """Plan, write in one batch with ``records``, then apply (lock held)."""
        tails: dict[bytes, int] = {}
        puts: list[tuple[bytes, bytes]] = []
        out = self._plan_push(sp, entries, tails, puts)
        deletes = plan_records(records, puts)
        if receipt is not None:
            puts.append(receipt_put(receipt, out))
        self._store.write(puts + self._tail_pointers(sp, tails), deletes)
        self._apply_push(sp, tails, len(entries))
        return out

    def push_durable(self, ns: bytes, entries: list[tuple[bytes, bytes]], *,
                     receipt: Optional[Receipt] = None) -> list[tuple[int, bytes]]:
        """``push`` that survives power loss; concurrent callers share one fsync
        (``receipt`` as :meth:`push_one`)."""
        result: list[tuple[int, bytes]] = self._group.submit((ns, entries, receipt))
        return result

    def _commit_pushes(self, works: list[tuple[bytes, list[tuple[bytes, bytes]],
                                               Optional[Receipt]]]
                       ) -> list[list[tuple[int, bytes]]]:
        with self._lock, self._interrupts:
            self._check()
            tails: dict[bytes, dict[bytes, int]] = {}
            puts: list[tuple[bytes, bytes]] = []
            results = []
            for ns, entries, receipt in works:
                sp = self._space(ns)
                results.append(self._plan_push(sp, entries, tails.setdefault(ns, {}), puts))
                if receipt is not None:
                    puts.append(receipt_put(receipt, results[-1]))
            for ns, lane_tails in tails.items():
                puts.extend(self._tail_pointers(self._spaces[ns], lane_tails))
            self._store.write(puts, sync=True)
            for ns, entries, _ in works:
                self._apply_push(self._spaces[ns], {}, len(entries))
            for ns, lane_tails in tails.items():
                self._apply_push(self._spaces[ns], lane_tails, 0)
            return results

    @staticmethod
    def _plan_push(sp: Space, entries: list[tuple[bytes, bytes]], tails: dict[bytes, int],
                   puts: list[tuple[bytes, bytes]]) -> list[tuple[int, bytes]]:
        """Give each entry the next seq of its lane (tracked in ``tails``), unapplied."""
        out: list[tuple[int, bytes]] = []
        put, give = puts.append, out.append
        # A run of entries of one lane (the usual batch) looks its lane up once.
        lane_now: Optional[bytes] = None
        prefix, seq = b"", 0
        for lane, data in entries:
            if lane != lane_now:
                if lane_now is not None:
                    tails[lane_now] = seq
                seq = tails.get(lane) or (sp.lanes[lane].tail if lane in sp.lanes else 1)
                prefix, lane_now = sp.item_prefix + lane, lane
            key = prefix + seq.to_bytes(8, "big")
            put((key, data))
            give((seq, key))
            seq += 1
        if lane_now is not None:
            tails[lane_now] = seq
        return out

    @staticmethod
    def _tail_pointers(sp: Space, tails: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
        return [
            (sp.pointer_prefix + lane, _pack(sp.lanes[lane].head if lane in sp.lanes else 1, t))
            for lane, t in tails.items()
        ]

    def _apply_push(self, sp: Space, tails: dict[bytes, int], n: int) -> None:
        for lane, tail in tails.items():
            ln = sp.lane(lane)
            ln.tail = tail
            sp.recount(lane, ln)
        sp.ready += n
        sp.unfinished += n
        if n and (self._readers or self._watchers):
            self._ready(n)
