"""Group commit of the outcomes of a pool's threads: one disk write for the jobs that
ended together.

Each thread still waits until the batch holding its job's outcome is written before it
goes on (so before its next job starts): an outcome is as durable as when each thread
wrote its own, and a job is still deleted only in the batch that stores its outcome.
What changes is who writes: the first thread to arrive writes what every thread that
came while the disk was busy left for it, in one batch (and one ``sync`` when the
store syncs), and wakes them.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from .. import layout as R

# (namespace, lane, seq, attempts, record ops) of one reserved job to delete
Ack = tuple[bytes, bytes, int, Optional[int], R.Ops]


class _Request:
    __slots__ = ("ack", "wake", "stored", "error", "done")

    def __init__(self, ack: Ack) -> None:
        self.ack = ack
        self.wake = threading.Lock()
        self.wake.acquire()  # released when its batch is written, or it is to lead
        self.stored = False
        self.error: Optional[BaseException] = None
        self.done = False


class GroupAck:
    """Acks (job deleted, its records written) of many threads, written in batches by
    the engine's ``ack_each``; ``sync``: each batch is synced before its callers go
    on."""

    def __init__(self, engine: Any, sync: bool) -> None:
        self.engine = engine
        self.sync = sync
        self._mu = threading.Lock()
        self._waiting: list[_Request] = []
        self._leading = False  # a thread is writing a batch
        self.batches = 0  # (how many writes; the benchmark reports jobs per write)

    def ack(self, ack: Ack) -> bool:
        """Delete a reserved job with its record ops, in the next batch; returns when
        that batch is written: True, or False when the job was not reserved so (nothing
        of it written). Raises what the write raised (``Closed``, ``DiskQueueError``):
        then nothing of the batch was written."""
        req = _Request(ack)
        with self._mu:
            self._waiting.append(req)
            lead = not self._leading
            self._leading = True
        if not lead:
            req.wake.acquire()  # its batch was written, or the lead came to it
            if req.done:
                if req.error is not None:
                    raise req.error
                return req.stored
        return self._lead(req)

    def _lead(self, req: _Request) -> bool:
        with self._mu:
            batch, self._waiting = self._waiting, []
        try:
            stored = self.engine.ack_each([r.ack for r in batch])
            if self.sync and any(stored):
                self.engine.sync()
        except BaseException as exc:  # noqa: B036 - each caller gets it, as from its own
            # write; nothing of the batch is stored
            for r in batch:
                r.error, r.done = exc, True
        else:
            for r, ok in zip(batch, stored, strict=True):
                r.stored, r.done = ok, True
        self.batches += 1
        with self._mu:
            if self._waiting:  # came while this batch was written: the next leads
                nxt: Optional[_Request] = self._waiting[0]
            else:
                nxt = None
                self._leading = False
        for r in batch:
            if r is not req:
                r.wake.release()
        if nxt is not None:
            nxt.wake.release()
        if req.error is not None:
            raise req.error
        return req.stored
