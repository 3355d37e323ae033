"""Group commit of the outcomes of a pool's threads: one disk write for the jobs that
ended together.

Each thread still waits until the batch holding its job's outcome is written before it
goes on (so before its next job starts): an outcome is as durable as when each thread
wrote its own, and a job is still deleted only in the batch that stores its outcome.
What changes is who writes: the engine's group commit (``engine/groupcommit.py``) lets
the first thread to arrive write, in one ``ack_each`` (and one ``sync`` when the store
syncs), what every thread that came while the disk was busy left for it.

A thread's work may also carry the start of its next job (a *guarded* write: only if
the job's record is still the one read when it was taken, see ``Runner.fetch_batch``),
in the same batch as its outcome, or on its own.
"""

from __future__ import annotations

from typing import Any, Optional

from ...engine.groupcommit import GroupCommit
from .. import layout as R

# (namespace, lane, seq, attempts, record ops) of one reserved job to delete
Ack = tuple[bytes, bytes, int, Optional[int], R.Ops]
# (records namespace, key, value expected there, record ops written only if it is)
Guarded = tuple[bytes, bytes, Optional[bytes], R.Ops]
_Work = tuple[Optional[Ack], Optional[Guarded]]


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
        return bool(self.group.submit((ack, None))[0])

    def ack_and_start(self, ack: Ack, guarded: Guarded) -> tuple[bool, bool]:
        """:meth:`ack`, and write ``guarded`` in the same batch if its record is as
        expected: whether each was written. Raises as :meth:`ack`."""
        stored, landed = self.group.submit((ack, guarded))
        return bool(stored), bool(landed)

    def guarded(self, guarded: Guarded) -> bool:
        """Write ``guarded`` alone (in the next batch) if its record is as expected;
        whether it was. Raises as :meth:`ack`."""
        return bool(self.group.submit((None, guarded))[1])

    def _write(self, works: list[_Work]) -> list[tuple[bool, bool]]:
        acks = [ack for ack, _ in works if ack is not None]
        guards = [guard for _, guard in works if guard is not None]
        done = iter(self.engine.ack_each(acks, guarded=guards) if guards
                    else self.engine.ack_each(acks))
        stored = [next(done) if ack is not None else False for ack, _ in works]
        landed = [next(done) if guard is not None else False for _, guard in works]
        if self.sync and (any(stored) or any(landed)):
            self.engine.sync()
        self.batches += 1
        return list(zip(stored, landed, strict=True))
