"""A kombu transport on a diskqueue directory: Celery without a broker server.

``Celery(broker="diskqueue:///var/lib/app/queue")`` runs a Celery app on one directory;
changing that URL to ``redis://...`` or ``amqp://...`` moves it to a broker server with
nothing else touched. Installing ``diskqueue[celery]`` is all it takes: the scheme is
registered through an entry point (see :mod:`diskqueue.contrib.kombu_scheme`), and
importing this module registers it too.

How kombu's model maps onto the directory (one :class:`~diskqueue.PrefixQueue`):

- A kombu queue is a prefix; its priority levels are more prefixes, named the way
  kombu's Redis transport names its lists (``queue``, ``queue\\x06\\x163``, ...), with the
  same steps (0, 3, 6, 9) and the same order: **0 runs first**, as on Redis.
- A message is *reserved* (:meth:`~diskqueue.PrefixQueue.reserve`) when a consumer takes
  it and deleted when the consumer acks it. A rejected one goes back to the front. If
  the consuming process dies, diskqueue hands its reservations back, so an
  ``acks_late`` task runs again after a ``SIGKILL``. A reservation also comes back when
  it has been held ``visibility_timeout`` seconds (default 3600, as on Redis).
- Bindings are stored in the directory too (one marker prefix per binding), so every
  process sees the queues every other process bound: fanout (Celery's remote control)
  and topic exchanges work across processes, as direct ones do.
"""

from __future__ import annotations

import logging
import queue as stdlib_queue
import threading
from bisect import bisect
from itertools import count
from time import monotonic
from typing import Any, Optional

from ..errors import Closed, DiskQueueError, Empty, Locked, NotReserved
from ..item import Item
from ..structures.prefix import PrefixQueue

try:
    from kombu.transport import TRANSPORT_ALIASES, virtual
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "diskqueue.contrib.kombu needs kombu: pip install 'diskqueue[celery]'"
    ) from exc

from .kombu_scheme import SCHEME, TRANSPORT

__all__ = ["Channel", "QoS", "Transport", "path_of"]

logger = logging.getLogger(__name__)

SEP = "\x06\x16"  # kombu's Redis transport separator: lane names read the same there
PRIORITY_STEPS = [0, 3, 6, 9]
BINDING_PREFIX = "_kombu.binding."
EXCHANGE_PREFIX = "_kombu.exchange."
PURGE_BATCH = 1000

TRANSPORT_ALIASES.setdefault(SCHEME, TRANSPORT)


def path_of(url: str) -> str:
    """The directory a ``diskqueue://`` URL names.

    ``diskqueue:///var/lib/app/queue`` is absolute; ``diskqueue://data/queue`` is
    relative to the working directory. Raises ``ValueError`` for a URL without a path.
    """
    rest = url.split("://", 1)[1] if "://" in url else url
    path = rest.split("?", 1)[0]
    if not path or path == "/":
        raise ValueError(
            f"a diskqueue broker URL names a directory, like diskqueue:///var/lib/app/queue;"
            f" {url!r} names none"
        )
    return path


def lane_of(queue: str, priority: int) -> str:
    """The prefix holding ``queue``'s messages at ``priority`` (rounded down to a step)."""
    step = PRIORITY_STEPS[bisect(PRIORITY_STEPS, priority) - 1]
    return f"{queue}{SEP}{step}" if step else queue


def lanes_of(queue: str) -> list[str]:
    """``queue``'s prefixes in the order they are consumed (priority 0 first)."""
    return [lane_of(queue, step) for step in PRIORITY_STEPS]


class QoS(virtual.QoS):
    """kombu's prefetch bookkeeping, with acks, rejects and restores done on disk.

    kombu's own QoS keeps unacked messages in memory and re-publishes copies of them
    when the channel closes; here each delivery is a diskqueue reservation, so an ack
    deletes it, a requeue puts it back at the front, and a process that dies without
    either gets its reservations handed back by diskqueue.
    """

    def ack(self, delivery_tag: str) -> None:
        """Delete the delivered message for good."""
        self.channel._settle(delivery_tag, requeue=False)
        super().ack(delivery_tag)
        self._room()

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """Put the message back at the front of its queue (``requeue``), or drop it."""
        self.channel._settle(delivery_tag, requeue=bool(requeue))
        self._quick_ack(delivery_tag)
        self._room()

    def _room(self) -> None:
        """Wake the transport's consuming thread: the prefetch window has room again."""
        transport = self.channel.connection
        if transport is not None:
            transport.wake.set()

    def restore_unacked(self) -> list[tuple[BaseException, Any]]:
        """Put every unacked message back at the front of its queue."""
        self._flush()
        errors: list[tuple[BaseException, Any]] = []
        while self._delivered:
            tag, message = self._delivered.popitem()
            try:
                self.channel._settle(tag, requeue=True)
            except Closed:
                # The directory was closed first (interpreter exit): diskqueue hands the
                # reservation back when this process is gone.
                continue
            except DiskQueueError as exc:
                errors.append((exc, message))
        return errors


class Channel(virtual.Channel):
    """A kombu channel whose queues live in the transport's directory."""

    QoS = QoS
    supports_fanout = True
    # Copies are never re-published on close: reservations are handed back instead.
    do_restore = True
    from_transport_options: Any = (
        *virtual.Channel.from_transport_options, "visibility_timeout")
    visibility_timeout: float = 3600.0

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._reserved: dict[str, Item] = {}
        self._no_ack_queues: set[str] = set()
        self._auto_delete_queues: set[str] = set()
        self._tags = count(1)
        self._paused: dict[str, float] = {}  # lane -> monotonic time it is asked again

    @property
    def store(self) -> PrefixQueue:
        """The transport's :class:`~diskqueue.PrefixQueue` (opened on first use)."""
        return self.connection.store  # type: ignore[no-any-return]

    # -- messages ----------------------------------------------------------------
    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Append ``message`` to ``queue`` at the message's priority."""
        priority = self._get_message_priority(message, reverse=False)
        self.store.enqueue(lane_of(queue, priority), message)

    def _get(self, queue: str, timeout: Optional[float] = None) -> dict[str, Any]:
        """Take ``queue``'s next message, highest priority first: reserved until it is
        acked, or removed at once for a consumer that does not ack."""
        return self._take(queue, queue in self._no_ack_queues, pause=True)

    def _take(self, queue: str, no_ack: bool, pause: bool = False) -> dict[str, Any]:
        """The next message of ``queue``. With ``pause``, a priority level found empty
        is not asked again for ``polling_interval`` seconds: a consumer polls many
        levels (4 per queue, and a worker consumes several queues), and each ask is a
        round trip for a process that does not hold the directory. A message sent to a
        paused level waits at most that long, as it would in an idle worker's poll."""
        store = self.store
        now = monotonic() if pause else 0.0
        for lane in lanes_of(queue):
            if pause and self._paused.get(lane, 0.0) > now:
                continue
            try:
                if no_ack:
                    return store.dequeue(lane).value  # type: ignore[no-any-return]
                item = store.reserve(lane, lease=self.visibility_timeout)
            except Empty:
                if pause:
                    self._paused[lane] = now + (self.connection.polling_interval or 0.0)
                continue
            return self._delivery(item)
        raise Empty()

    def _delivery(self, item: Item) -> dict[str, Any]:
        """The payload of a reserved item, with a delivery tag of its own: a message
        that comes back is a new delivery, never confused with the earlier one."""
        payload: dict[str, Any] = item.value
        props = payload["properties"]
        tag = f"{self.channel_id}.{next(self._tags)}.{item.id}"
        props["delivery_tag"] = tag
        if item.attempts > 1:
            payload["redelivered"] = True
            props.setdefault("delivery_info", {})["redelivered"] = True
        self._reserved[tag] = item
        return payload

    def _settle(self, delivery_tag: str, *, requeue: bool) -> None:
        """Ack (or, with ``requeue``, nack) the reservation behind ``delivery_tag``."""
        item = self._reserved.pop(delivery_tag, None)
        if item is None:  # a no-ack delivery, or settled already
            return
        try:
            if requeue:
                self.store.nack(item)
            else:
                self.store.ack(item)
        except NotReserved:
            # Held past visibility_timeout: it went back and may be running elsewhere.
            logger.warning("message %s was settled after its visibility_timeout of %ss "
                           "ran out; it has been delivered again", delivery_tag,
                           self.visibility_timeout)

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        """Consume ``queue``; a ``no_ack`` consumer takes messages out for good."""
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        """Stop a consumer; an ``auto_delete`` queue goes with its last consumer."""
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._no_ack_queues.discard(queue)
            if queue in self._auto_delete_queues:
                self._auto_delete_queues.discard(queue)
                self.queue_delete(queue)
        return result

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        """Take one message from ``queue`` now (``None`` when it is empty): reserved
        until acked, or taken out for good with ``no_ack``."""
        try:
            message = self.Message(self._take(queue, no_ack), channel=self)
        except Empty:
            return None
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    # -- queues --------------------------------------------------------------------
    def _new_queue(self, queue: str, auto_delete: bool = False, **kwargs: Any) -> None:
        if auto_delete:
            self._auto_delete_queues.add(queue)

    def _size(self, queue: str) -> int:
        """Ready messages in ``queue`` (reserved ones are not counted, as on Redis)."""
        store = self.store
        return sum(store.length(lane) for lane in lanes_of(queue))

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        """A queue exists while it holds messages or is bound to an exchange."""
        if self._size(queue):
            return True
        return any(binding[-1] == queue for binding in self._stored_bindings(""))

    def _purge(self, queue: str) -> int:
        """Remove every ready message of ``queue``; reserved ones stay. Returns how many."""
        store = self.store
        removed = 0
        for lane in lanes_of(queue):
            while True:
                try:
                    removed += len(store.dequeue_many(lane, PURGE_BATCH, raw=True))
                except Empty:
                    break
        return removed

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False,
                     **kwargs: Any) -> None:
        """Delete ``queue``: its messages and its bindings, including those another
        process made (a queue left bound by a killed process is removed this way)."""
        if if_empty and self._size(queue):
            return
        super().queue_delete(queue, if_unused=if_unused, if_empty=if_empty, **kwargs)
        for exchange, rkey, pattern, bound in self._stored_bindings(""):
            if bound == queue:
                self._unbind_stored(exchange, rkey, pattern, queue)
        self._purge(queue)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        """Purge ``queue`` and forget the binding named by ``args``."""
        if len(args) >= 3:
            exchange, routing_key, pattern = args[:3]
            self._unbind_stored(exchange, routing_key, pattern, queue)
        self._purge(queue)

    # -- bindings, shared through the directory --------------------------------------
    def _binding_lane(self, exchange: str, routing_key: str, pattern: Any,
                      queue: str) -> str:
        return BINDING_PREFIX + SEP.join(
            [exchange or "", routing_key or "", pattern or "", queue or ""])

    def _queue_bind(self, exchange: str, routing_key: str, pattern: Any,
                    queue: str) -> None:
        """Record a binding where every process sharing the directory sees it."""
        lane = self._binding_lane(exchange, routing_key, pattern, queue)
        if not self.store.length(lane):
            self.store.enqueue(lane, None)

    def queue_unbind(self, queue: str, exchange: Optional[str] = None,
                     routing_key: str = "", arguments: Any = None, **kwargs: Any) -> None:
        """Remove a binding, here and in the directory."""
        rkey, pattern, _ = self.typeof(exchange or "").prepare_bind(queue, exchange, routing_key,
                                                              arguments)
        self._unbind_stored(exchange or "", rkey, pattern, queue)
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)

    def _unbind_stored(self, exchange: str, routing_key: str, pattern: Any,
                       queue: str) -> None:
        lane = self._binding_lane(exchange, routing_key, pattern, queue)
        while True:
            try:
                self.store.dequeue_many(lane, PURGE_BATCH, raw=True)
            except Empty:
                return

    def exchange_declare(self, exchange: Optional[str] = None, type: str = "direct",
                         durable: bool = False, auto_delete: bool = False,
                         arguments: Any = None, nowait: bool = False,
                         passive: bool = False) -> None:
        """Declare an exchange, and record its type for the other processes."""
        known = exchange in self.state.exchanges
        super().exchange_declare(exchange, type, durable, auto_delete, arguments, nowait,
                                 passive)
        if exchange and not known and not passive:
            lane = f"{EXCHANGE_PREFIX}{exchange}{SEP}{type or 'direct'}"
            if not self.store.length(lane):
                self.store.enqueue(lane, None)

    def typeof(self, exchange: str, default: str = "direct") -> Any:
        """The exchange type: as declared here, else as declared by another process."""
        if exchange and exchange not in self.state.exchanges:
            head = f"{EXCHANGE_PREFIX}{exchange}{SEP}"
            for prefix in self.store.prefixes():
                name = prefix.decode("utf-8", "replace")
                if name.startswith(head) and name[len(head):] in self.exchange_types:
                    return self.exchange_types[name[len(head):]]
        return super().typeof(exchange, default)

    def _stored_bindings(self, exchange: str) -> list[tuple[str, ...]]:
        """``(routing_key, pattern, queue)`` of every stored binding of ``exchange``
        (all exchanges, with the exchange first, when ``exchange`` is empty)."""
        head = BINDING_PREFIX + (exchange + SEP if exchange else "")
        found = []
        for prefix in self.store.prefixes():
            name = prefix.decode("utf-8", "replace")
            if name.startswith(head):
                found.append(tuple(name[len(head):].split(SEP)))
        return found

    def get_table(self, exchange: str) -> list[tuple[Any, ...]]:
        """This process's bindings of ``exchange`` and those stored in the directory."""
        try:
            local = list(super().get_table(exchange))
        except KeyError:
            local = []
        stored = [(rkey, pattern or None, queue)
                  for rkey, pattern, queue in self._stored_bindings(exchange)]
        return local + [b for b in stored if b not in local]

    def _lookup(self, exchange: str, routing_key: str,
                default: Optional[str] = None) -> Any:
        """Queues for a message: this process's bindings when they route it (no read of
        the directory: the common case of a producer that declared its queue), else
        every binding stored in the directory."""
        if exchange and self.typeof(exchange).type != "fanout":
            try:
                table = self.state.exchanges[exchange]["table"]
            except KeyError:
                table = None
            if table:
                found = self.typeof(exchange).lookup(table, exchange, routing_key, None)
                if found:
                    return list(found)
        return super()._lookup(exchange, routing_key, default)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str,
                    **kwargs: Any) -> None:
        """Copy ``message`` into every queue bound to ``exchange`` in any process."""
        for queue in self._lookup(exchange, routing_key):
            self._put(queue, message, **kwargs)


class Transport(virtual.Transport):
    """kombu transport for ``diskqueue://`` URLs.

    Transport options (``broker_transport_options`` in Celery): ``visibility_timeout``
    (seconds a delivered message may stay unacked before it is delivered again; default
    3600), ``polling_interval`` (seconds between polls of empty queues; default 0.1),
    ``connect_timeout`` (seconds to wait for the process holding the directory; 10).
    """

    Channel = Channel
    can_parse_url = True
    polling_interval = 0.1
    default_port = None
    driver_type = "diskqueue"
    driver_name = "diskqueue"
    connection_errors: Any = (
        *virtual.Transport.connection_errors, Locked, Closed)
    channel_errors: Any = (
        *virtual.Transport.channel_errors, DiskQueueError)
    implements = virtual.Transport.implements.extend(
        asynchronous=False,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False,
    )

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._store: Optional[PrefixQueue] = None
        # Set by every ack and reject. A worker whose prefetch window is full waits on
        # it rather than sleeping polling_interval: kombu's virtual transports sleep,
        # which caps a worker at (prefetch count / polling_interval) tasks a second.
        self.wake = threading.Event()

    @property
    def store(self) -> PrefixQueue:
        """The directory's :class:`~diskqueue.PrefixQueue`, opened on first use."""
        store = self._store
        if store is None or store.closed:
            client: Any = self.client
            options = client.transport_options
            store = self._store = PrefixQueue(
                path_of(client.hostname or ""),
                connect_timeout=float(options.get("connect_timeout", 10.0)))
        return store

    def drain_events(self, connection: Any, timeout: Any = None, **kwargs: Any) -> Any:
        """Deliver one message to its consumer's callback; between empty polls, wait
        ``polling_interval`` or until an ack makes room, whichever comes first. Raises
        ``TimeoutError`` (``socket.timeout``) when ``timeout`` passes with nothing
        delivered."""
        start = monotonic()
        cycle: Any = self.cycle
        while True:
            try:
                cycle.get(self._deliver, timeout=timeout)
                return
            except stdlib_queue.Empty:  # kombu's (ours is a subclass)
                pass
            pause = self.polling_interval or 0.0
            if timeout is not None:
                left = timeout - (monotonic() - start)
                if left <= 0:
                    raise TimeoutError()
                pause = min(pause, left)
            self.wake.wait(pause)
            self.wake.clear()

    def establish_connection(self) -> Any:
        """Open the directory (so a bad path or a hung holder fails here), then a
        channel."""
        self.store  # noqa: B018 - opening is the point
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        """Close the channels (handing their reservations back), then the directory."""
        super().close_connection(connection)
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def driver_version(self) -> str:
        """diskqueue's version."""
        from .. import __version__

        return __version__

    def as_uri(self, uri: str, include_password: bool = False, mask: str = "**") -> str:
        """The URL as given: it holds no password."""
        return uri

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # No default directory: a connection without a URL fails, naming what to give.
        """No default directory: a connection without one fails, naming the URL form to give."""
        return {"hostname": None, "port": None}
