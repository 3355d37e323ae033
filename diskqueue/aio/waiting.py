"""Awaiting an item without a thread per waiter.

A :class:`Dispatcher` serves every task that awaits one kind of take on one handle
(``dequeue`` of a Queue, ``reserve(lease=30)``, ``dequeue(prefix)`` of one prefix…).
It waits in one of two ways, chosen when a task starts to wait and nobody waits yet:

*Watching* (the process holds the directory, so every put, from any handle, thread or
other process, is made by this process's engine): the dispatcher is one of the
engine's watchers (:mod:`diskqueue.engine.watches`) while tasks wait. A put on the
loop's own thread wakes the oldest waiting task directly; a put from another thread
(a blocking handle, the socket server serving another process) schedules that with
``loop.call_soon_threadsafe``. No thread is involved. The woken task takes the item
itself, with the take that does not wait, once it runs: so a task cancelled before it
ran took nothing, and passes its wake-up on to the next. A woken task that finds
nothing (another consumer was quicker) waits again, at the front. Leases that end are
watched with a timer on the loop, set to the engine's next expiry.

*A thread* (a client: the items change in the holder's process, and only a call
parked at the holder learns of them): the dispatcher owns at most one thread, alive
while tasks wait (and one ``SLICE`` after the last, blocked on a condition, in case
another comes). The thread makes the blocking take of the structure and hands what it
took to the oldest waiting task with ``loop.call_soon_threadsafe``. The thread takes
an item before it knows whether anybody will still want it: the task may be
cancelled, or time out, meanwhile. So every take is made returnable (a reservation,
or for a Stack a pop whose top can be pushed again) and is *accepted* by the task only
once it resumed with it; an item nobody accepted is given back at once, on the loop,
by the ``give_back`` the handle supplied. Between the take and the acceptance no
await happens that could lose it.

Idle, there is no thread, no watcher and no timer, and nothing polls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, Optional, TypeVar

from ..errors import AsyncEmpty, Closed, Empty, NotReserved
from ..structures.handle import Watch

T = TypeVar("T")

# How long one blocking take waits before the thread looks again whether any task still
# waits (and whether the handle closed). It bounds how long a thread outlives its last
# waiter, and how long ``close()`` waits for it; a take that finds an item returns at
# once, whatever this is.
SLICE = 0.25

log = logging.getLogger("diskqueue.aio")

# What a watching dispatcher hands a task it wakes: "try your take now".
_RUNG = object()


class Dispatcher(Generic[T]):
    """One kind of waiting take, shared by every task that awaits it (see the module).

    ``watch(callback)`` makes the dispatcher one of the engine's watchers (None in a
    client process). ``take(seconds)`` takes one item, waiting at most ``seconds``, or
    raises ``Empty``; it runs in the dispatcher's thread. ``give_back(item)`` returns
    an item nobody accepted to the front; it runs on the loop (or in the thread once
    the loop is gone).
    """

    def __init__(self, take: Callable[[float], T], give_back: Callable[[T], None],
                 name: str, watch: Callable[[Callable[[int], None]], Optional[Watch]]
                 ) -> None:
        self._take = take
        self._give_back = give_back
        self._name = name
        self._watch = watch
        self._ring = self._rung  # one bound method: the engine compares its watchers
        self._closed = False
        self._start_over()

    def _start_over(self) -> None:
        """The state of a dispatcher with nobody waiting (also what a forked child
        inherits: the parent's thread, watch and waiters did not come along)."""
        self._pid = os.getpid()
        # waiting with a thread
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # a lingering thread waits here
        self._waiters: OrderedDict[asyncio.Future[Any], None] = OrderedDict()
        self._in_transit = 0  # taken, handed to the loop, not yet delivered
        self._taking = False  # the thread is in (or about to make) a take
        self._thread: Optional[threading.Thread] = None
        # watching (only ever touched on the loop's thread)
        self._sub: Optional[Watch] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread = 0
        self._ringing: OrderedDict[asyncio.Future[Any], None] = OrderedDict()
        self._rung_tasks = 0  # woken, not yet run
        self._spare = 0  # items told of when no task was left to wake
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at = 0.0
        self._ending = False  # the watch ends at the next loop turn unless a task waits

    @property
    def busy(self) -> bool:
        """True while tasks wait here, or were woken and have not run yet, or the thread
        is in a take, or an item is on its way to the loop (it may go back to the
        front): a new take must then queue up behind them, or it could overtake that
        item. A thread that only lingers does not count."""
        if self._pid != os.getpid():
            self._start_over()
        return (self._taking or bool(self._waiters) or bool(self._in_transit)
                or bool(self._ringing) or bool(self._rung_tasks))

    async def wait(self, timeout: Optional[float], now: Callable[[], Any],
                   accept: Callable[[T], Any], first: bool = True) -> Any:
        """Wait for the next item, and return what ``now()`` returns (watching) or
        ``accept(item)`` of the item the thread took.

        ``now`` is the take that does not wait (``Empty``: nothing there). With
        ``first`` it is tried at once, unless others wait before this task (False: the
        caller has just tried it). Raises ``Empty`` after ``timeout`` seconds (None: for
        ever), ``Closed`` when the handle closes, and whatever the take raised
        (``Undecodable``…). Cancelled at any point, it either took nothing or gives its
        item back before it returns.
        """
        if first and (self._spare or not self.busy):
            try:
                result = now()
            except Empty:
                self._spare = 0
            else:
                self._spare = max(self._spare - 1, 0)
                return result
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        front = False  # a woken task that found nothing waits again at the front
        try:
            while True:
                future: asyncio.Future[Any] = loop.create_future()
                fresh = self._enlist(future, front)
                timer = None
                try:
                    if fresh:
                        # The watch starts now: a put from another thread since the
                        # last try was told to nobody, so try again (no await between).
                        try:
                            return now()
                        except Empty:
                            self._spare = 0
                        self._arm()
                    if end is not None:
                        timer = loop.call_at(end, _expire, future, timeout or 0.0)
                    got = await future
                except asyncio.CancelledError:
                    # Woken (or handed an item) just before the cancellation landed.
                    if future.done() and not future.cancelled() and future.exception() is None:
                        self._unclaimed(future.result())
                    raise
                finally:
                    if timer is not None:
                        timer.cancel()
                    self._drop(future, fresh is None)
                if got is _RUNG:
                    self._rung_tasks -= 1
                    try:
                        return now()
                    except Empty:
                        self._spare = 0
                        front = True
                        if end is not None and loop.time() >= end:
                            raise AsyncEmpty(f"nothing came within {timeout:g} s") from None
                        continue
                try:
                    return accept(got)
                except NotReserved:
                    # The hand-over lease ran out before this task accepted the item (a
                    # loop blocked for minutes): it went back to the queue by itself.
                    continue
        finally:
            self._leave()

    def _enlist(self, future: asyncio.Future[Any], front: bool) -> Optional[bool]:
        """Add a waiting task: watching (True when the watch starts with it, False when it
        ran already) or, where the engine cannot be watched, with the thread (None)."""
        if self._pid != os.getpid():
            self._start_over()
        if self._closed:
            raise Closed(f"{self._name} is closed; open it again to use it")
        loop = future.get_loop()
        fresh = False
        if self._sub is not None and self._loop is not loop and self._ending:
            self._end_watch()  # left by the tasks of a loop that is gone
        if self._sub is None and not self._waiters:
            # Where to tell, set before the engine may call: a put from another thread
            # can come at once.
            self._loop, self._loop_thread = loop, threading.get_ident()
            self._sub = self._watch(self._ring)
            fresh = self._sub is not None
            if not fresh:
                self._loop = None
        if self._sub is None:
            self._add(future)
            return None
        if self._loop is not loop:
            raise RuntimeError(f"{self._name} has tasks waiting on another event loop; use "
                               "one handle per loop")
        self._ringing[future] = None
        if front:
            self._ringing.move_to_end(future, last=False)
        return fresh

    def _drop(self, future: asyncio.Future[Any], threaded: bool) -> None:
        """A waiting task stopped waiting on ``future``."""
        if threaded:
            with self._lock:
                self._waiters.pop(future, None)
        else:
            self._ringing.pop(future, None)

    def _unclaimed(self, got: Any) -> None:
        """What a cancelled task was handed and will not take: a wake-up goes to the
        next task, an item back to the front."""
        if got is _RUNG:
            self._rung_tasks -= 1
            self._wake_up(1)
        else:
            self._return(got)

    def _leave(self) -> None:
        """A task stopped waiting for good. After the last one the watch ends, at the
        next turn of the loop: a consumer that waits again as soon as it has its item
        keeps it, and the task goes on with its item first."""
        if (self._sub is not None and self._loop is not None and not self._ending
                and not self._ringing and not self._rung_tasks):
            self._ending = True
            self._loop.call_soon(self._end_watch)

    def _end_watch(self) -> None:
        """Stop watching, unless tasks wait again."""
        self._ending = False
        if self._sub is not None and not self._ringing and not self._rung_tasks:
            sub, self._sub, self._loop, self._spare = self._sub, None, None, 0
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            sub.stop()

    # -- watching ----------------------------------------------------------------
    def _rung(self, n: int) -> None:
        """The engine's watcher: called under the engine's lock, in any thread, so it
        only hands the news to the loop (see :mod:`diskqueue.engine.watches`)."""
        loop = self._loop
        if loop is None:
            return
        try:
            if threading.get_ident() == self._loop_thread:
                if n:
                    self._wake_up(n)  # no engine call: safe under its lock
                else:
                    loop.call_soon(self._arm)
            elif n:
                loop.call_soon_threadsafe(self._wake_up, n)
            else:
                loop.call_soon_threadsafe(self._arm)
        except RuntimeError:  # that loop is closed: nobody there waits any more
            pass

    def _wake_up(self, n: int) -> None:
        """Wake the ``n`` oldest waiting tasks (on the loop); items nobody was left to
        wake for are counted, so that a task coming next tries at once."""
        ringing = self._ringing
        while n and ringing:
            future, _ = ringing.popitem(last=False)
            if not future.done():
                future.set_result(_RUNG)
                self._rung_tasks += 1
                n -= 1
        if self._sub is not None:
            self._spare += n

    def _arm(self) -> None:
        """Set the timer to the engine's next lease expiry (asking for it returns the
        items whose lease ended, which wakes tasks for them)."""
        sub, loop = self._sub, self._loop
        if sub is None or loop is None:
            return  # (armed also while the watch outlives its tasks by a turn: a task
            # that waits again in that turn keeps the watch, and needs the timer)
        try:
            due = sub.next_expiry()
        except Exception:  # closed: let every task find out with its own take
            self._wake_up(len(self._ringing))
            return
        if due is None or (self._timer is not None and self._timer_at <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = loop.call_later(max(due - time.monotonic(), 0.0), self._expired)

    def _expired(self) -> None:
        self._timer = None
        self._arm()

    # -- waiting with a thread -----------------------------------------------------
    def _add(self, waiter: asyncio.Future[Any]) -> None:
        with self._lock:
            for other in self._waiters:
                if other.get_loop() is not waiter.get_loop():
                    raise RuntimeError(
                        f"{self._name} has tasks waiting on another event loop; use one "
                        "handle per loop")
                break
            self._waiters[waiter] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name,
                                                daemon=True)
                self._thread.start()
            else:
                self._wake.notify()  # it lingers: no need for a new one

    # -- the thread --------------------------------------------------------------
    def _next_loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The loop of the oldest waiter still to be served, or None to stop (lock held)."""
        if self._closed or len(self._waiters) <= self._in_transit:
            return None
        for waiter in self._waiters:
            return waiter.get_loop()
        return None

    def _run(self) -> None:
        while True:
            with self._lock:
                loop = self._next_loop()
                if loop is None:
                    # Linger one SLICE for the next waiter (blocked, not polling): a
                    # consumer that waits again soon needs no new thread, and a thread
                    # that ends right after a hand-over would hold the GIL just as the
                    # loop wakes up to take it.
                    self._taking = False
                    if not self._closed:
                        self._wake.wait(SLICE)
                    loop = self._next_loop()
                    if loop is None:
                        self._thread = None
                        return
                self._taking = True
            try:
                got: Any = self._take(SLICE)
            except Empty:
                continue
            except BaseException as exc:  # Closed, Locked, Undecodable…: to a waiter
                got = _Failure(exc)
            with self._lock:
                self._in_transit += 1
            try:
                loop.call_soon_threadsafe(self._deliver, got)
            except RuntimeError:  # that loop is closed: nobody there will accept it
                with self._lock:
                    self._in_transit -= 1
                self._return(got)

    # -- on the loop --------------------------------------------------------------
    def _deliver(self, got: Any) -> None:
        """Hand a take's outcome to the oldest task still waiting, or give it back."""
        with self._lock:
            self._in_transit -= 1
            target = None
            while self._waiters:
                waiter, _ = self._waiters.popitem(last=False)
                if not waiter.done():
                    target = waiter
                    break
        if target is None:
            self._return(got)
        elif isinstance(got, _Failure):
            target.set_exception(got.exc)
        else:
            target.set_result(got)

    def _return(self, got: Any) -> None:
        """Give back an item nobody accepted. Should that fail (the directory's holder
        went away meanwhile, say), the item is not lost: its reservation ends with the
        holder, or with the hand-over lease, and it goes back to the front then."""
        if isinstance(got, _Failure):
            return
        try:
            self._give_back(got)
        except Exception:
            log.exception("%s: could not give an item back at once", self._name)

    async def close(self) -> None:
        """Fail every waiter with ``Closed`` and wait until the thread has stopped (it
        stops within one ``SLICE``) and what it took meanwhile has been given back."""
        with self._lock:
            self._closed = True
            waiters = list(self._waiters)
            self._waiters.clear()
            self._wake.notify_all()
        waiters += self._ringing
        self._ringing.clear()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(Closed(f"{self._name} was closed while waiting"))
        self._end_watch()
        # Polled, and only here: a close is rare, and this way an item still on its way
        # to this loop (a call_soon_threadsafe not run yet) is waited for too.
        end = time.monotonic() + 4 * SLICE
        while time.monotonic() < end:
            with self._lock:
                if self._thread is None and not self._in_transit:
                    return
            await asyncio.sleep(0.005)


class _Failure:
    """An exception the thread's take raised, on its way to a waiter."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _expire(future: asyncio.Future[Any], timeout: float) -> None:
    if not future.done():
        future.set_exception(AsyncEmpty(f"nothing came within {timeout:g} s"))


class SharedCall:
    """One blocking call (``join``) made by one thread for every task awaiting it.

    Cancelling an awaiting task costs nothing: the call returns no item. The thread
    ends with the call; a task that comes later starts the next one.
    """

    def __init__(self, call: Callable[[], None], name: str) -> None:
        self._call = call
        self._name = name
        self._lock = threading.Lock()
        self._futures: list[asyncio.Future[None]] = []

    async def wait(self) -> None:
        """Wait until the call returns (raise what it raised)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._futures.append(future)
            start = len(self._futures) == 1
        if start:
            threading.Thread(target=self._run, name=self._name, daemon=True).start()
        await future

    def _run(self) -> None:
        error: Optional[BaseException] = None
        try:
            self._call()
        except BaseException as exc:
            error = exc
        with self._lock:
            futures, self._futures = self._futures, []
        for future in futures:
            try:
                future.get_loop().call_soon_threadsafe(_settle, future, error)
            except RuntimeError:
                pass


def _settle(future: asyncio.Future[None], error: Optional[BaseException]) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
