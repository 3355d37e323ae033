"""Group commit of the outcomes of a pool's threads: one disk write for the jobs that
ended together.

Each thread still waits until the batch holding its job's outcome is written before it
goes on (so before its next job starts): an outcome is as durable as when each thread
wrote its own, and a job is still deleted only in the batch that stores its outcome.
What changes is who writes: the engine's group commit (``engine/groupcommit.py``) lets
the first thread to arrive write, in one ``ack_each`` (and one ``sync`` when the store
syncs), what every thread that came while the disk was busy left for it.
"""

from __future__ import annotations

from typing import Any, Optional

from ...engine.groupcommit import GroupCommit
from .. import layout as R

# (namespace, lane, seq, attempts, record ops) of one reserved job to delete
Ack = tuple[bytes, bytes, int, Optional[int], R.Ops]


class GroupAck:
    """Acks (job deleted, its records written) of many threads, written in batches by
    the engine's ``ack_each``; ``sync``: each batch is synced before its callers go
    on."""

    def __init__(self, engine: Any, sync: bool) -> None:
        self.engine = engine
        self.sync = sync
        self.batches = 0  # (how many writes; the benchmark reports jobs per write)
        self.group = GroupCommit(self._write)

    def ack(self, ack: Ack) -> bool:
        """Delete a reserved job with its record ops, in the next batch; returns when
        that batch is written: True, or False when the job was not reserved so (nothing
        of it written). Raises what the write raised (``Closed``, ``DiskQueueError``):
        then nothing of the batch was written."""
        return bool(self.group.submit(ack))

    def _write(self, acks: list[Ack]) -> list[bool]:
        stored = list(self.engine.ack_each(acks))
        if self.sync and any(stored):
            self.engine.sync()
        self.batches += 1
        return stored
