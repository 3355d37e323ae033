"""Memory brought back in step with the disk after a signal handler's exception.

Python runs a signal handler in the main thread between two steps of whatever that
thread is doing, and a handler that raises (``KeyboardInterrupt`` from Ctrl-C,
``SystemExit`` from a SIGTERM handler that calls ``sys.exit``) can end an engine call
after its write landed and before the engine moved its pointers in memory. A dequeue's
delete was then on disk while memory still held the item as ready: the next take found
it missing (``Corrupted``), and the next write of that lane's pointer wrote the stale
head back, so the directory stayed ``Corrupted`` after a reopen (a soak's holder,
stopped with SIGTERM in a dequeue, did just that). Every call runs inside the lock
and a guard that sees such an exception leave it (:class:`~.conditions.Interrupts`)
and, before the lock is let go, has the pointers read back from disk here: a take
that landed is taken (a reservation of it goes back to the front: its caller never got
the item), a push that landed is ready, an ack that landed has ended the reservation.
"""

from __future__ import annotations

import logging

import msgpack
from sortedcontainers import SortedList, SortedSet

from ..errors import DiskQueueError
from . import keys
from .core import Core
from .lanes import Space

log = logging.getLogger("diskqueue.engine")


class Interruptions(Core):
    """The engine's reconciling of its pointers after an interrupted call."""

    def _after_interrupt(self, exc: BaseException) -> None:
        """See the module (lock held). Never raises: what cannot be read now stays as
        it was, and the store's own errors come with the next call."""
        if self.closed or self.forked:
            return
        self._store.interrupted(exc)  # first: the reads below recover the store if needed
        self._ahead.clear()  # (it may hold an item taken meanwhile)
        try:
            self._reconcile()
        except DiskQueueError as exc:  # the disk is still full, say: the next call says
            # so too, and a traceback for each interrupted call would flood the log
            log.warning("%s: could not read the pointers back after an interrupted "
                        "call: %s", self.path, exc)
        except Exception:  # noqa: BLE001 - the caller's own exception is on its way
            log.warning("%s: could not read the pointers back after an interrupted call",
                        self.path, exc_info=True)

    def _reconcile(self) -> None:
        """Read every pointer and aside record back, and rebuild what the interrupted
        call may have left half changed: the sorted sets of active lanes and of items
        at the front are pure Python, and an exception inside one of their methods
        leaves its parts out of step with each other."""
        store = self._store
        became_ready = 0
        for key, value in store.iter_prefix(keys.POINTER):
            sp, lane = self._split(key, 0)
            head, tail = keys.POINTERS.unpack(value)
            ln = sp.lane(lane)
            pushed = tail - ln.tail
            ln.head, ln.tail = head, tail
            if pushed > 0:
                became_ready += pushed
                sp.unfinished += pushed
        for sp in self._spaces.values():
            self._reconcile_space(sp)
        if became_ready:
            self._ready(became_ready)

    def _reconcile_space(self, sp: Space) -> None:
        store = self._store
        ended = [at for at in sp.reserved if store.get(sp.aside_key(*at)) is None]
        for at in ended:  # acked
            del sp.reserved[at]
        if ended:
            self._leases_ended(len(ended))
        sp.aside = {}
        for key, value in store.iter_prefix(sp.aside_prefix):
            lane, seq = key[len(sp.aside_prefix):-8], int.from_bytes(key[-8:], "big")
            if (lane, seq) not in sp.reserved:
                sp.aside[(lane, seq)] = _attempts(value)
        active = []
        for lane, ln in sp.lanes.items():
            # below the head, the items still there are reserved or back at the front
            # (one the interrupted call reserved too: its caller never got it)
            below = store.scan(start=ln.prefix, stop=ln.prefix + ln.head.to_bytes(8, "big"),
                               limit=None)
            front = [seq for seq in (int.from_bytes(k[-8:], "big") for k, _ in below)
                     if (lane, seq) not in sp.reserved]
            ln.front = SortedList(front) if front else None
            if ln.ready:
                active.append(lane)
        sp.active = SortedSet(active)
        sp.ready = sum(ln.ready for ln in sp.lanes.values())


def _attempts(aside: bytes) -> int:
    """The attempts an aside record holds (with or without the client holding it)."""
    raw = msgpack.unpackb(aside)
    return int(raw[0] if type(raw) is list else raw)
