"""Salvage a damaged directory: LevelDB's repair, then pointers rebuilt from the items.

LevelDB's repair keeps whatever records the files still hold, so afterwards the stored
head/tail pointers may name items that are gone. This is the one place that scans every
item key: each lane's pointers are rebuilt so that every surviving item is reachable
and none is missing from the ready range.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import msgpack

from . import keys, store

log = logging.getLogger("diskqueue.repair")


def repair(path: str) -> dict[str, int]:
    """Repair ``path`` in place and return what was found: items kept, lanes rebuilt."""
    store.repair(path)
    db = store.Store(path)
    try:
        return _rebuild(db)
    finally:
        db.close()


def _split(key: bytes, tail: int) -> tuple[bytes, bytes]:
    n = key[1]
    return key[2 : 2 + n], key[2 + n : len(key) - tail]


def _rebuild(db: store.Store) -> dict[str, int]:
    pointers: dict[tuple[bytes, bytes], tuple[int, int]] = {}
    for key, value in db.iter_prefix(keys.POINTER):
        pointers[_split(key, 0)] = keys.POINTERS.unpack(value)
    aside: dict[tuple[bytes, bytes], dict[int, bytes]] = defaultdict(dict)
    for key, value in db.iter_prefix(keys.ASIDE):
        aside[_split(key, 8)][int.from_bytes(key[-8:], "big")] = value
    items: dict[tuple[bytes, bytes], list[int]] = defaultdict(list)
    for key, _ in db.iter_prefix(keys.ITEM):
        items[_split(key, 8)].append(int.from_bytes(key[-8:], "big"))

    kept = rebuilt = 0
    for where in set(pointers) | set(items) | set(aside):
        old_head, old_tail = pointers.get(where, (1, 1))
        seqs = sorted(items.get(where, []))
        kept += len(seqs)
        stale = [s for s in aside[where] if s not in set(seqs)]
        run_start = _run_start(seqs, old_head, old_tail)
        # below the old head without an aside record: consumed, left by an unfinished clear
        consumed = [s for s in seqs if s < old_head and s not in aside[where]]
        loose = [s for s in seqs if old_head <= s < run_start and s not in aside[where]]
        kept -= len(consumed)
        if run_start == old_head and where in pointers and not (stale or loose or consumed):
            continue
        rebuilt += 1
        _rewrite_lane(db, where, run_start, max(old_tail, 1), loose, stale + consumed)
    log.info("repair of %s: %d items kept, %d lanes rebuilt", db.path, kept, rebuilt)
    return {"items": kept, "lanes_rebuilt": rebuilt}


def _run_start(seqs: list[int], old_head: int, old_tail: int) -> int:
    """Where the contiguous run ending at the tail starts (the tail if none is left).

    Survivors below it keep their ids and wait at the front, in order, as items put
    back by ``nack`` do, so no id changes and nothing missing is ever in the run.
    """
    start = old_tail
    for seq in reversed(seqs):
        if seq != start - 1 or seq < old_head:
            break
        start = seq
    return start


def _rewrite_lane(db: store.Store, where: tuple[bytes, bytes], head: int, tail: int,
                  loose: list[int], gone: list[int]) -> None:
    """Point the lane at its run; survivors before it wait at the front; drop the rest."""
    ns, lane = where
    nsb = keys.ns_bytes(ns)
    side = keys.ASIDE + nsb + lane
    item = keys.ITEM + nsb + lane
    puts = [(side + keys.seq_bytes(s), msgpack.packb(0)) for s in loose]
    puts.append((keys.POINTER + nsb + lane, keys.POINTERS.pack(head, tail)))
    deletes = [side + keys.seq_bytes(s) for s in gone] + [item + keys.seq_bytes(s) for s in gone]
    db.write(puts, deletes)
