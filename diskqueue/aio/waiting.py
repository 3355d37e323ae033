"""Awaiting an item without a thread per waiter.

A :class:`Dispatcher` serves every task that awaits one kind of take on one handle
(``dequeue`` of a Queue, ``reserve(lease=30)``, ``dequeue(prefix)`` of one prefix…).
It owns at most one thread, alive while tasks wait (and one ``SLICE`` after the last,
blocked on a condition, in case another comes): the thread makes
the blocking take of the structure (which already waits on the engine's condition, or
on a call parked at the holder of another process, so a put from any handle, thread
or process wakes it) and hands what it took to the oldest waiting task with
``loop.call_soon_threadsafe``. Idle, there is no thread and nothing polls.

The thread takes an item before it knows whether anybody will still want it: the task
may be cancelled, or time out, meanwhile. So every take is made returnable (a
reservation, or for a Stack a pop whose top can be pushed again) and is *accepted* by
the task only once it resumed with it; an item nobody accepted is given back at once,
on the loop, by the ``give_back`` the handle supplied. Between the take and the
acceptance no await happens that could lose it.
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

T = TypeVar("T")

# How long one blocking take waits before the thread looks again whether any task still
# waits (and whether the handle closed). It bounds how long a thread outlives its last
# waiter, and how long ``close()`` waits for it; a take that finds an item returns at
# once, whatever this is.
SLICE = 0.25

log = logging.getLogger("diskqueue.aio")


class Dispatcher(Generic[T]):
    """One kind of blocking take, shared by every task that awaits it (see the module).

    ``take(seconds)`` takes one item, waiting at most ``seconds``, or raises ``Empty``;
    it runs in the dispatcher's thread. ``give_back(item)`` returns an item nobody
    accepted to the front; it runs on the loop (or in the thread once the loop is gone).
    """

    def __init__(self, take: Callable[[float], T], give_back: Callable[[T], None],
                 name: str) -> None:
        self._take = take
        self._give_back = give_back
        self._name = name
        self._closed = False
        self._start_over()

    def _start_over(self) -> None:
        """The state of a dispatcher with nobody waiting (also what a forked child
        inherits: the parent's thread and waiters did not come along)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # a lingering thread waits here
        self._waiters: OrderedDict[asyncio.Future[Any], None] = OrderedDict()
        self._in_transit = 0  # taken, handed to the loop, not yet delivered
        self._taking = False  # the thread is in (or about to make) a take
        self._thread: Optional[threading.Thread] = None

    @property
    def busy(self) -> bool:
        """True while tasks wait here, or the thread is in a take, or an item is on its
        way to the loop (it may go back to the front): a new take must then queue up
        behind them, or it could overtake that item. A thread that only lingers does
        not count."""
        if self._pid != os.getpid():
            self._start_over()
        return self._taking or bool(self._waiters) or bool(self._in_transit)

    async def wait(self, timeout: Optional[float], accept: Callable[[T], Any],
                   take_now: Optional[Callable[[], Any]] = None) -> Any:
        """Wait for the next item this dispatcher takes and return ``accept(item)``.

        ``take_now``, when given, is tried first while nobody waits here (its result is
        returned as it is; ``Empty`` from it means: wait). Raises ``Empty`` after
        ``timeout`` seconds (None: for ever), ``Closed`` when the handle closes, and
        whatever the take raised (``Undecodable``…). Cancelled at any point, it either
        took nothing or gives its item back before it returns.
        """
        if take_now is not None and not self.busy:
            try:
                return take_now()
            except Empty:
                pass
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            future: asyncio.Future[Any] = loop.create_future()
            self._add(future)
            timer = None if end is None else loop.call_at(end, _expire, future, timeout or 0.0)
            try:
                item = await future
            except asyncio.CancelledError:
                # The item may have been handed over just before the cancellation landed.
                if future.done() and not future.cancelled() and future.exception() is None:
                    self._return(future.result())
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                with self._lock:
                    self._waiters.pop(future, None)
            try:
                return accept(item)
            except NotReserved:
                # The hand-over lease ran out before this task accepted the item (a
                # loop blocked for minutes): it went back to the queue by itself.
                continue

    def _add(self, waiter: asyncio.Future[Any]) -> None:
        if self._pid != os.getpid():
            self._start_over()
        with self._lock:
            if self._closed:
                raise Closed(f"{self._name} is closed; open it again to use it")
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
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(Closed(f"{self._name} was closed while waiting"))
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
