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
        self._handed: _Request | None = None  # the waiter last told to lead

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
            try:
                req.wake.acquire()
            except BaseException:  # a signal handler's exception, in the main thread
                self._withdraw(req)
                raise
        if not req.done:
            try:
                self._round()
            except BaseException:  # raised while it waited for company: see _withdraw
                self._withdraw(req, leading=True)
                raise
        if req.error is not None:
            raise req.error
        return req.result

    def _withdraw(self, req: _Request, leading: bool = False) -> None:
        """Take back a request whose caller stopped waiting (``leading``: as the
        leader): its work is not committed unless a round already carries it, and the
        lead, if it had it, goes on to the next waiter (else every later submit would
        wait for a leader that never comes)."""
        with self._lock:
            if req.done or req not in self._waiting:
                return  # a round carries it: that round hands the lead on
            self._waiting.remove(req)
            if leading or self._handed is req:
                self._hand_on()

    def _hand_on(self) -> None:
        """The oldest waiter leads the next round, if any (lock held)."""
        if self._waiting:
            self._handed = self._waiting[0]
            self._handed.wake.release()
        else:
            self._leading = False

    def _round(self) -> None:
        with self._lock:
            if self._last > 1 and len(self._waiting) < self._last:
                end = time.monotonic() + min(self._took * WAIT_SHARE, MAX_WAIT)
                self._want = self._last
                try:
                    while len(self._waiting) < self._last:
                        left = end - time.monotonic()
                        if left <= 0:
                            break
                        self._arrived.wait(left)
                finally:
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
            self._hand_on()
        for r in group:
            r.done = True
            r.wake.release()
