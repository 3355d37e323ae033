"""Group commit: many threads' durable writes share one fsync.

A thread hands its work to ``submit``. The first one in becomes the leader and commits
everything waiting in one call, while later arrivals queue for the next round; when a
round ends the leader hands the lead to the oldest waiter and leaves, so no thread is
kept working for others. Each waiter sleeps on its own lock, so waking a round's
threads does not make them fight over a shared one. (LevelDB groups concurrent sync
writes itself, but only while every writer is inside the database at once, which the
lock around a queue's pointers prevents.)

A round that follows a round of several writers first waits, for at most a fraction of
an fsync, until as many have arrived as last time: the threads the last round woke need
the GIL one after another to come back, and without the wait every round would catch
only those that came back during the fsync before it, about half of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .conditions import Condition, new_lock

WAIT_SHARE = 0.5  # of the last commit's time, at most, spent waiting for company
MAX_WAIT = 0.002  # seconds


class _Request:
    __slots__ = ("work", "result", "error", "done", "wake")

    def __init__(self, work: Any) -> None:
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.wake = threading.Lock()
        self.wake.acquire()  # released once: when done, or when it is its turn to lead


class GroupCommit:
    """Runs many threads' durable writes through one ``commit`` call per round.

    ``commit(works) -> results`` runs in the leader and is all-or-nothing.
    """

    def __init__(self, commit: Callable[[list[Any]], list[Any]]) -> None:
        self._commit = commit
        self._lock = new_lock()
        self._waiting: list[_Request] = []
        self._leading = False
        self._last = 0  # size of the last round
        self._took = 0.0  # how long its commit took
        self._arrived = Condition(self._lock)  # the leader waits for company
        self._want = 0  # arrivals it waits for (0: nobody waits)

    def submit(self, work: Any) -> Any:
        """Commit ``work`` in the next round and return its result; raises what
        ``commit`` raised for the round (then none of the round's work landed)."""
        req = _Request(work)
        with self._lock:
            self._waiting.append(req)
            follow = self._leading
            self._leading = True
            if self._want and len(self._waiting) >= self._want:
                self._arrived.notify()
        if follow:
            req.wake.acquire()
        if not req.done:
            self._round()
        if req.error is not None:
            raise req.error
        return req.result

    def _round(self) -> None:
        with self._lock:
            if self._last > 1 and len(self._waiting) < self._last:
                end = time.monotonic() + min(self._took * WAIT_SHARE, MAX_WAIT)
                self._want = self._last
                while len(self._waiting) < self._last:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self._arrived.wait(left)
                self._want = 0
            group, self._waiting = self._waiting, []
        self._last = len(group)
        started = time.monotonic()
        try:
            results = self._commit([r.work for r in group])
            for r, result in zip(group, results, strict=True):
                r.result = result
        except BaseException as exc:
            for r in group:
                r.error = exc
        self._took = time.monotonic() - started
        with self._lock:
            if self._waiting:
                self._waiting[0].wake.release()  # the oldest waiter leads the next round
            else:
                self._leading = False
        for r in group:
            r.done = True
            r.wake.release()
