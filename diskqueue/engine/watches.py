"""Watchers: being told of new items without a thread that waits for them.

A thread waits for an item on the engine's condition. An event loop cannot: it would
block every other task. So the engine also keeps *watchers*, callables it calls with
its lock held, from whichever thread made the change:

- ``watcher(n)`` with ``n > 0``: ``n`` items became ready (a push, a nack, an expired
  lease, pops put back), the moment the threads waiting on the condition are woken;
- ``watcher(0)``: look again, without a new item: the engine closed, or a reservation
  was made whose lease ends before every other one (:meth:`Watches.next_expiry` tells
  when, and a watcher that waits past it should ask it then).

A watcher runs under the engine's lock, so it must return at once and call nothing of
the engine: it schedules the work (an event loop's ``call_soon_threadsafe``, say), and
that work takes the item with an ordinary call that does not wait.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from .core import Core


class Watches(Core):
    """The engine's watch, unwatch and next_expiry (see the module)."""

    def watch(self, callback: Callable[[int], None]) -> bool:
        """Call ``callback(n)`` from now on whenever items may have become ready (see the
        module for what ``n`` says and what the callback may do). True: this engine
        holds the directory, so every change is made here (a client's engine says
        False: its items change in another process). Raises ``Closed`` when closed."""
        with self._lock, self._interrupts:
            self._check()
            self._watchers = (*self._watchers, callback)
        return True

    def unwatch(self, callback: Callable[[int], None]) -> None:
        """Stop calling ``callback`` (one that is not watching is ignored); never raises."""
        with self._lock, self._interrupts:
            self._watchers = tuple(w for w in self._watchers if w != callback)

    def next_expiry(self) -> Optional[float]:
        """Return the reservations whose lease has ended to the front now (telling the
        waiters and watchers), and the ``time.monotonic()`` at which the next lease ends
        (None: no reservation has one). Raises ``Closed`` when closed."""
        with self._lock, self._interrupts:
            self._check()
            if self._leases:
                self._expire_leases()
            return self._leases[0][0] if self._leases else None
