"""A Dramatiq broker on a diskqueue directory: ``DiskQueueBroker(path)``.

An app written for Dramatiq runs on one machine with no broker server, and moves to
Redis or RabbitMQ by swapping this broker object for ``RedisBroker``/``RabbitmqBroker``.

Layout: each Dramatiq queue is a :class:`diskqueue.PrefixQueue` in ``path/<queue name>``
holding three lanes, as Dramatiq's Redis broker keeps three lists: ``Q`` (ready
messages), ``DQ`` (the delay queue ``<name>.DQ``, whose messages carry an ``eta`` the
worker waits for) and ``XQ`` (dead letters, what ``nack`` rejects). One directory per
queue makes ``in_flight()`` count exactly that queue's reservations, which ``join`` needs.

A consumed message is *reserved* until the worker acks it. The lease is effectively
endless: like RabbitMQ's unacked messages, a reservation comes back when the process
holding it dies (diskqueue returns the reservations of a process that is gone), not
after a time limit, so a long job or a delay of days is never delivered twice while its
worker lives. Many ``dramatiq`` worker processes share one directory: the first to open
a queue holds its LevelDB and serves the others over the directory's socket.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from typing import Optional

try:
    import dramatiq
    from dramatiq.broker import Broker, Consumer, MessageProxy
    from dramatiq.common import current_millis, dq_name, q_name
    from dramatiq.errors import (
        ActorNotFound,
        ConnectionClosed,
        DecodeError,
        QueueJoinTimeout,
        QueueNotFound,
    )
    from dramatiq.message import Message
    from dramatiq.middleware import Middleware
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "diskqueue.contrib.dramatiq needs Dramatiq: pip install 'diskqueue[dramatiq]'"
    ) from exc

from ..errors import DiskQueueError, Empty, Locked, NotReserved
from ..item import Item
from ..structures.prefix import PrefixQueue

__all__ = ["DiskQueueBroker"]

log = logging.getLogger("diskqueue.contrib.dramatiq")

#: How long dead-lettered messages are kept, in milliseconds (Redis's default: 7 days).
DEFAULT_DEAD_MESSAGE_TTL = 86400000 * 7

# A reservation outlives any job and any delay; it ends when its holder acks, nacks or dies.
_HOLD = 10 * 365 * 86400.0

# Lanes of one queue's directory.
_READY, _DELAYED, _DEAD = b"Q", b"DQ", b"XQ"

# Dramatiq's own rule for queue names; it also keeps a name a plain directory name.
_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*\Z")

# Dead letters looked at per nack for expiry: bounded, so a nack stays cheap.
_TRIM_PER_NACK = 4


def _split(queue_name: str) -> tuple[str, bytes]:
    """The base queue and the lane a Dramatiq queue name lives in."""
    if queue_name.endswith(".DQ"):
        return q_name(queue_name), _DELAYED
    if queue_name.endswith(".XQ"):
        return q_name(queue_name), _DEAD
    return queue_name, _READY


class DiskQueueBroker(Broker):
    """A Dramatiq broker whose queues live in the directory ``path``.

    Parameters:
      path: the directory (created if missing); share it between processes to share
        the queues.
      middleware: as for :class:`dramatiq.Broker` (default: Dramatiq's defaults).
      dead_message_ttl: how long, in milliseconds, rejected messages are kept in a
        queue's dead-letter lane (``<name>.XQ``) before a later rejection drops them.
      connect_timeout: seconds to wait for the process holding a queue's directory
        before :class:`dramatiq.errors.ConnectionClosed` (a ``diskqueue.Locked``).

    Raises ``TypeError`` for a ``path`` that is not ``str``/``os.PathLike``, and
    ``diskqueue.DiskQueueError`` for one that exists and is not a directory.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 middleware: Optional[list[Middleware]] = None,
                 dead_message_ttl: int = DEFAULT_DEAD_MESSAGE_TTL,
                 connect_timeout: float = 10.0) -> None:
        super().__init__(middleware=middleware)
        if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be str or os.PathLike, not {type(path).__name__}")
        self.path = os.path.realpath(os.fspath(path))
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise DiskQueueError(f"{self.path} exists and is not a directory: give "
                                 "DiskQueueBroker a directory path")
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        self.dead_message_ttl = dead_message_ttl
        self.connect_timeout = connect_timeout
        self.queues: set[str] = set()
        self._handles: dict[str, PrefixQueue] = {}
        self._lock = threading.Lock()

    # -- queues ------------------------------------------------------------------
    def handle(self, queue_name: str) -> PrefixQueue:
        """The :class:`diskqueue.PrefixQueue` holding a declared queue (and its ``.DQ``
        and ``.XQ``), opened on first use; ``QueueNotFound`` if it was never declared."""
        base, _ = _split(queue_name)
        handle = self._handles.get(base)
        if handle is not None:
            return handle
        if base not in self.queues:
            raise QueueNotFound(queue_name)
        with self._lock:
            if base not in self._handles:
                try:
                    self._handles[base] = PrefixQueue(
                        os.path.join(self.path, base), codec="raw",
                        connect_timeout=self.connect_timeout)
                except Locked as exc:
                    raise ConnectionClosed(exc) from exc
            return self._handles[base]

    def declare_queue(self, queue_name: str) -> None:
        """Declare a queue and its delay queue; no effect if already declared.

        Raises ``ValueError`` for a name Dramatiq would refuse (it is a directory name)
        or one ending in ``.DQ``/``.XQ``."""
        if queue_name in self.queues:
            return
        if not isinstance(queue_name, str) or not _QUEUE_NAME.match(queue_name):
            raise ValueError(f"invalid queue name {queue_name!r}: use letters, digits, "
                             "'.', '_' and '-', starting with a letter or '_'")
        if _split(queue_name)[1] != _READY:
            raise ValueError(f"invalid queue name {queue_name!r}: names ending in .DQ or "
                             ".XQ are the delay and dead-letter queues of another queue")
        self.emit_before("declare_queue", queue_name)
        self.queues.add(queue_name)
        self.handle(queue_name)
        self.emit_after("declare_queue", queue_name)
        delayed = dq_name(queue_name)
        self.delay_queues.add(delayed)
        self.emit_after("declare_delay_queue", delayed)

    def get_declared_queues(self) -> set[str]:
        """The names of the queues declared on this broker."""
        return self.queues.copy()

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        """A consumer of ``queue_name`` (a queue or its ``.DQ``) that reserves up to
        ``prefetch`` messages and waits up to ``timeout`` ms for one.

        Raises ``QueueNotFound`` if the queue was never declared."""
        base, lane = _split(queue_name)
        return _DiskQueueConsumer(self, self.handle(base), lane, prefetch, timeout)

    def enqueue(self, message: Message, *, delay: Optional[int] = None) -> Message:
        """Store a message; with ``delay`` (ms), on the delay queue with an ``eta``.

        Raises ``QueueNotFound`` if the message's queue was never declared."""
        queue_name = message.queue_name
        lane = _READY
        if delay is not None:
            queue_name, lane = dq_name(queue_name), _DELAYED
            message = message.copy(queue_name=queue_name,
                                   options={"eta": current_millis() + delay})
        handle = self.handle(queue_name)
        self.emit_before("enqueue", message, delay)
        try:
            handle.enqueue(lane, message.encode())
        except Locked as exc:
            raise ConnectionClosed(exc) from exc
        self.emit_after("enqueue", message, delay)
        return message

    # -- tests and maintenance -----------------------------------------------------
    def flush(self, queue_name: str) -> None:
        """Drop every message of a queue: ready, delayed, dead-lettered and reserved."""
        self.handle(queue_name).clear()

    def flush_all(self) -> None:
        """Drop every message of every declared queue."""
        for queue_name in self.get_declared_queues():
            self.flush(queue_name)

    def join(self, queue_name: str, *, interval: int = 20,
             timeout: Optional[int] = None) -> None:
        """Wait until a queue and its delay queue hold nothing ready and nothing
        reserved, checking every ``interval`` ms (meant for tests).

        Raises ``QueueJoinTimeout`` after ``timeout`` ms, ``QueueNotFound`` if the
        queue was never declared."""
        handle = self.handle(queue_name)
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        idle = 0
        while True:
            # A retried or due message is enqueued before its old copy is acked, so it
            # is always counted somewhere; but the counts are read one after another, and
            # a message can move between two reads. So the queue counts as idle only when
            # it is seen empty twice in a row, ``interval`` apart, each time with the
            # reservations read both before and after the lanes.
            if self._idle(handle):
                idle += 1
                if idle == 2:
                    return
            else:
                idle = 0
            if deadline is not None and time.monotonic() >= deadline:
                raise QueueJoinTimeout(queue_name)
            time.sleep(interval / 1000)

    @staticmethod
    def _idle(handle: PrefixQueue) -> bool:
        return (handle.in_flight() == 0 and handle.length(_READY) == 0
                and handle.length(_DELAYED) == 0 and handle.in_flight() == 0)

    def dead_letters(self, queue_name: str) -> list[Message]:
        """The messages rejected on a queue, oldest first."""
        handle = self.handle(queue_name)
        found = []
        for offset in range(handle.length(_DEAD)):
            try:
                found.append(Message.decode(handle.peek_by_offset(_DEAD, offset).value))
            except (Empty, IndexError):  # trimmed or flushed meanwhile
                break
        return found

    def close(self) -> None:
        """Close the queues' directories; reservations not acked come back on reopen."""
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.close()


class _DiskQueueMessage(MessageProxy):
    """A consumed message and the reservation that holds it."""

    def __init__(self, message: Message, item: Item) -> None:
        super().__init__(message)
        self._item = item


class _DiskQueueConsumer(Consumer):
    """Reserves messages of one lane; ack deletes, nack moves to the dead letters.

    Worker threads ack and nack while the consumer thread fetches, so the prefetch
    limit is a semaphore (as in Dramatiq's stub broker) and the handle is thread-safe.
    """

    def __init__(self, broker: DiskQueueBroker, handle: PrefixQueue, lane: bytes,
                 prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.handle = handle
        self.lane = lane
        self.wait = timeout / 1000
        self.slots = threading.Semaphore(prefetch)
        # Reserved, not yet handed to the worker, in the lane's order: (the actor's
        # priority, the item, its message or None when it does not decode).
        self.fetched: list[tuple[int, Item, Optional[Message]]] = []

    def __next__(self) -> Optional[MessageProxy]:
        """The next message (reserved until acked or nacked), or None when none came within the
        consumer's timeout."""
        if not self.fetched:
            self._fetch()
        while self.fetched:
            # The most urgent of the burst first: the worker orders what it holds by
            # actor priority, and a worker thread may take the first message before the
            # rest of a burst reaches it.
            first = min(range(len(self.fetched)), key=lambda i: self.fetched[i][0])
            _, item, message = self.fetched.pop(first)
            if message is not None:
                return _DiskQueueMessage(message, item)
            # Not a Dramatiq message: kept among the dead letters rather than retried
            # for ever or dropped.
            self.handle.enqueue(_DEAD, item.value)
            self._settle(item)
        return None

    def _fetch(self) -> None:
        """Wait up to the idle timeout for one message, then take what else is ready up
        to the free prefetch slots, before the worker sees the first (as Redis's batch
        fetch does, so the worker can order a burst by actor priority)."""
        if not self.slots.acquire(timeout=self.wait):
            return
        try:
            self._add(self._reserve(block=True))
            while self.slots.acquire(blocking=False):
                self._add(self._reserve(block=False))
        except Empty:
            self.slots.release()

    def _add(self, item: Item) -> None:
        try:
            message = Message.decode(item.value)
        except DecodeError:
            log.error("message %d of %s does not decode; moved to its dead letters",
                      item.id, self.handle.path, exc_info=True)
            self.fetched.append((-1, item, None))
            return
        try:
            priority = self.broker.get_actor(message.actor_name).priority
        except ActorNotFound:
            priority = 0  # the worker says what it makes of it
        self.fetched.append((priority, item, message))

    def _reserve(self, *, block: bool) -> Item:
        try:
            return self.handle.reserve(self.lane, lease=_HOLD, block=block, timeout=self.wait)
        except Locked as exc:
            self.slots.release()
            raise ConnectionClosed(exc) from exc

    def close(self) -> None:
        """Put back what was fetched and never handed to the worker, in order."""
        while self.fetched:
            _, item, _ = self.fetched.pop()
            try:
                self.handle.nack(item, front=True)
            except (NotReserved, Locked):
                pass  # it is back already, or comes back when this process ends
            finally:
                self.slots.release()

    def _settle(self, item: Item) -> None:
        """Ack a reservation; one that came back to the queue meanwhile stays there."""
        try:
            self.handle.ack(item)
        except NotReserved:
            log.warning("message %d of %s was no longer reserved; it will run again",
                        item.id, self.handle.path)
        except Locked as exc:
            raise ConnectionClosed(exc) from exc
        finally:
            self.slots.release()

    def ack(self, message: MessageProxy) -> None:
        """Delete a processed message."""
        self._settle(message._item)

    def nack(self, message: MessageProxy) -> None:
        """Move a failed message to its queue's dead letters (``<name>.XQ``)."""
        dead = message._message.copy(options={"dead_message_at": current_millis()})
        try:
            self.handle.enqueue(_DEAD, dead.encode())
        except Locked as exc:
            raise ConnectionClosed(exc) from exc
        self._settle(message._item)
        self._trim()

    def _trim(self) -> None:
        """Drop dead letters older than the broker's ``dead_message_ttl``, oldest first."""
        oldest = current_millis() - self.broker.dead_message_ttl
        for _ in range(_TRIM_PER_NACK):
            try:
                item = self.handle.reserve(_DEAD, lease=_HOLD)
            except Empty:
                return
            try:
                stamp = Message.decode(item.value).options.get("dead_message_at", 0)
            except DecodeError:
                stamp = 0
            if stamp > oldest:
                self.handle.nack(item, front=True)
                return
            self.handle.ack(item)

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Put messages this worker fetched but did not run back at the front."""
        for message in messages:
            try:
                self.handle.nack(message._item, front=True)
            except NotReserved:
                pass
            finally:
                self.slots.release()


def _check_version() -> None:
    """Refuse a Dramatiq older than the one this broker is written for."""
    major, minor = (int(part) for part in dramatiq.__version__.split(".")[:2])
    if (major, minor) < (1, 15):
        raise ImportError(f"diskqueue.contrib.dramatiq needs dramatiq>=1.15, not "
                          f"{dramatiq.__version__}: pip install 'diskqueue[dramatiq]'")


_check_version()
