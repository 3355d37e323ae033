"""What every TaskQueue and worker of this process shares for one directory.

A condition that worker threads notify when a job finishes (so ``Job.result()`` wakes at
once rather than polling), and a lock that makes the scheduler's read-then-move steps
atomic among the workers of this process.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_shared: dict[str, Shared] = {}


class Shared:
    """The per-directory condition, lock and scheduler wake-ups of this process."""

    def __init__(self) -> None:
        self.finished = threading.Condition()
        self.waiters = 0
        self.scheduling = threading.Lock()
        self.wakers: set[threading.Event] = set()  # scheduler wake-ups, for new delays

    def notify_finished(self) -> None:
        """Wake the threads waiting in ``Job.result()`` (a job finished)."""
        if self.waiters:
            with self.finished:
                self.finished.notify_all()

    def wake_schedulers(self) -> None:
        """Wake the schedulers of this process (a job was scheduled)."""
        for event in list(self.wakers):
            event.set()


def shared(path: str) -> Shared:
    """The :class:`Shared` of the directory ``path`` in this process."""
    with _lock:
        found = _shared.get(path)
        if found is None:
            found = _shared[path] = Shared()
        return found
