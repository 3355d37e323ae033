"""A condition variable whose wait keeps its lock when a signal handler raises.

``threading.Condition.wait`` lets go of its lock, then enters the ``try`` whose
``finally`` takes it back. An exception that a signal handler raises between the two
(``SystemExit`` from a SIGTERM handler, ``KeyboardInterrupt``) leaves the waiting
thread without the lock, and the ``with`` around the wait releases it all the same:
the caller gets ``RuntimeError: release unlocked lock`` instead of the exception, or,
when another thread took the lock meanwhile, that thread's lock is let go under it
and two threads change a directory's state at once (about 1 in 1,000 interrupted
waits on CPython 3.10 to 3.13). Here the lock is an RLock, which only its owner can
release, and a wait takes it back whenever it let go of it, so the signal's own
exception comes out and the lock is held as the caller expects.

:class:`Interrupts` is the other half: such an exception can also end a call between
its write and its bookkeeping in memory, and the engine then reads its state back.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Optional

_new_waiter = threading.Lock


def new_lock() -> Any:
    """The lock for :class:`Condition` s: an RLock (only its owner releases it)."""
    return threading.RLock()


class Interrupts:
    """Entered inside the engine's lock by every call (``with lock, interrupts:``); when
    an exception that is not an ``Exception`` leaves the call (a signal handler's
    ``KeyboardInterrupt`` or ``SystemExit``), it runs ``read_back`` before the lock is
    let go (see :mod:`diskqueue.engine.interrupted`).

    The lock stays the C ``RLock``, released by its own ``__exit__`` after this one's: a
    lock released by Python code could be left held by an exception raised as that code
    begins, and every other thread would wait for it for ever.
    """

    __slots__ = ("read_back",)

    def __init__(self, read_back: Callable[[BaseException], None]) -> None:
        self.read_back = read_back

    def __enter__(self) -> None:
        """Nothing to do as a call begins (the lock is already held)."""
        return None

    def __exit__(self, kind: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: object) -> None:
        """Read back after a signal handler's exception; never raises, and lets the
        exception go on (a second signal's, raised as this begins, skips the read)."""
        if exc is None or isinstance(exc, Exception):
            return
        for _ in range(_AGAIN):
            try:
                self.read_back(exc)
                return
            except BaseException:  # noqa: B036 - another signal's: the first one is on
                continue  # its way out; read back again


_AGAIN = 8  # tries of a read-back that more signals interrupt


class Condition:
    """``threading.Condition``'s wait, notify and notify_all over an RLock from
    :func:`new_lock`, held once by the waiter (the engine never nests it)."""

    __slots__ = ("_lock", "_owned", "_waiters")

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self._owned = lock._is_owned  # RLock's own check of the calling thread
        self._waiters: deque[Any] = deque()

    def __enter__(self) -> bool:
        """Take the lock (``with condition:``, as ``threading.Condition``)."""
        return bool(self._lock.acquire())

    def __exit__(self, *exc: object) -> None:
        """Let go of the lock; ``RuntimeError`` if this thread does not hold it."""
        self._lock.release()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Let go of the lock until notified or ``timeout`` seconds pass, then hold it
        again (also when an exception ends the wait); True when notified."""
        if not self._owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = _new_waiter()
        waiter.acquire()
        got = False
        try:
            self._waiters.append(waiter)
            self._lock.release()
            if timeout is None:
                got = waiter.acquire()
            elif timeout > 0:
                got = waiter.acquire(True, timeout)
            else:
                got = waiter.acquire(False)
            return got
        finally:
            if not self._owned():
                self._lock.acquire()
            if not got:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass  # notified as it gave up

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiting threads (lock held)."""
        waiters = self._waiters
        while waiters and n > 0:
            waiters.popleft().release()
            n -= 1

    def notify_all(self) -> None:
        """Wake every waiting thread (lock held)."""
        self.notify(len(self._waiters))
