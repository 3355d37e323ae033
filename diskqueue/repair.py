"""Salvage a damaged directory: LevelDB's repair, then pointers rebuilt from the items.

LevelDB's repair keeps whatever records the files still hold, so afterwards the stored
head/tail pointers may name items that are gone. This is the one place that scans every
item key: each lane's pointers are rebuilt so that every surviving item is reachable
and none is missing from the ready range.
"""

from __future__ import annotations

import logging
from collections import defaultdict

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
        ns, lane = where
        old_head, old_tail = pointers.get(where, (1, 1))
        seqs = items.get(where, [])
        front = {s for s in seqs if s < old_head and s in aside[where]}
        run = sorted(s for s in seqs if s >= old_head or s not in front)
        stale_aside = [s for s in aside[where] if s not in seqs]
        kept += len(front) + len(run)
        head = run[0] if run else old_tail
        contiguous = run == list(range(head, head + len(run)))
        if contiguous and where in pointers and head == old_head and not stale_aside:
            continue
        rebuilt += 1
        _rewrite_lane(db, ns, lane, run, aside[where], stale_aside, max(old_tail, 1))
    log.info("repair of %s: %d items kept, %d lanes rebuilt", db.path, kept, rebuilt)
    return {"items": kept, "lanes_rebuilt": rebuilt}


def _rewrite_lane(db: store.Store, ns: bytes, lane: bytes, run: list[int],
                  aside: dict[int, bytes], stale_aside: list[int], old_tail: int) -> None:
    """Make the lane's run contiguous, keeping the first survivor's id."""
    nsb = keys.ns_bytes(ns)
    item = keys.ITEM + nsb + lane
    side = keys.ASIDE + nsb + lane
    head = run[0] if run else old_tail
    puts: list[tuple[bytes, bytes]] = []
    deletes: list[bytes] = [side + keys.seq_bytes(s) for s in stale_aside]
    for new, old in enumerate(run, start=head):
        if new == old:
            continue
        value = db.get(item + keys.seq_bytes(old))
        if value is None:
            continue
        deletes.append(item + keys.seq_bytes(old))
        puts.append((item + keys.seq_bytes(new), value))
        if old in aside:
            deletes.append(side + keys.seq_bytes(old))
            puts.append((side + keys.seq_bytes(new), aside[old]))
    tail = head + len(run)
    puts.append((keys.POINTER + nsb + lane, keys.POINTERS.pack(head, tail)))
    db.write(puts, deletes)
