"""What every structure's handle shares: opening, codecs, closing, iteration, reservations."""

from __future__ import annotations

import abc
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, Optional, cast

from .. import codecs
from .._checks import check_count, check_id, check_path, check_timeout
from ..engine import permissions
from ..engine.api import Check, EngineAPI, Entry
from ..errors import Closed, DiskQueueError, NotReserved, Undecodable
from ..item import Item, items_run
from ..sharing import registry


class _ClosedEngine:
    """Stands in for the engine after ``close()``: any use raises ``Closed``."""

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> NoReturn:
        """Any attribute: raises ``Closed``."""
        raise Closed(f"{self._path} is closed; open it again to use it")


def _closed_engine(path: str) -> EngineAPI:
    # Typed as the interface it stands in for: every use of it raises Closed.
    return cast(EngineAPI, _ClosedEngine(path))


def _reason(codec: str, exc: Exception) -> str:
    """The codec's complaint, short enough for a message."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"the {codec} codec raised {text}"


class Handle(abc.ABC):
    """An open structure in a directory. Subclasses say what kind and how items look.

    Takes decode before anything is taken: a handle passes ``check=`` to the engine,
    which runs it on the raw data after reading the items and before deleting or
    reserving them, so an item the codec cannot decode raises ``Undecodable`` and stays
    where it was. ``raw=True`` skips decoding: the way to take such an item on purpose.
    """

    _kind = ""
    _accepts: tuple[str, ...] = ()
    _ns = b""

    def __init__(self, path: str | os.PathLike[str], *, codec: codecs.CodecSpec = "msgpack",
                 sync: bool = False, maxsize: int = 0, mode: int = 0o700,
                 connect_timeout: float = 10.0) -> None:
        """Open the structure in the directory ``path``, creating it (and its parents)
        with ``mode`` when it does not exist yet.

        ``codec`` turns values into bytes: ``"msgpack"``, ``"json"``, ``"pickle"``,
        ``"raw"`` or an object with ``dumps``/``loads``. ``sync=True`` makes every write
        survive power loss before the call returns. ``maxsize`` bounds the ready items (0:
        no bound). ``connect_timeout`` bounds, in seconds, the wait for another process
        that holds the directory and does not answer.

        Raises ``TypeError``/``ValueError`` for a bad argument or codec name;
        ``IncompatibleType`` when the directory holds another kind of structure;
        ``Locked`` when another process holds it and cannot be reached in time;
        ``PermissionDenied`` when this user may not use it; ``Corrupted`` when LevelDB
        finds it damaged; ``DiskQueueError`` when ``path`` is not a directory.
        """
        self.path = check_path(path)
        mode = permissions.check_mode(mode)
        if not isinstance(sync, bool):
            raise TypeError(f"sync must be a bool, not {type(sync).__name__}")
        self.maxsize = check_count("maxsize", maxsize)
        dumps, self._loads = codecs.resolve(codec)
        self._codec = codec if isinstance(codec, str) else type(codec).__name__
        # A codec whose loads cannot fail (raw) needs no check on the take paths.
        self._plain = self._loads is codecs.identity
        self._encode = codecs.encoder(dumps)
        # Hot paths call the bare dumps of a named codec and fall back to _encode on failure.
        self._dumps = dumps if isinstance(codec, str) else self._encode
        self._dumps_many = codecs.many(self._dumps)
        self._sync = sync
        # The directory is created with exactly ``mode``; a wider one found warns.
        permissions.prepare_directory(self.path, mode)
        engine = registry.acquire(self.path, connect_timeout=connect_timeout)
        try:
            engine.ensure_kind(self._kind, self._accepts)
        except BaseException:
            engine.release()
            raise
        self._engine: EngineAPI = engine

    # -- lifecycle -------------------------------------------------------------
    @property
    def role(self) -> str:
        """``"owner"`` when this process holds the directory, ``"client"`` when another
        process does and serves this one over the directory's socket."""
        return self._engine.role

    @property
    def closed(self) -> bool:
        """Whether ``close()`` or ``drop()`` was called on this handle."""
        return isinstance(self._engine, _ClosedEngine)

    def close(self) -> None:
        """Close this handle; idempotent. Later calls raise ``Closed``."""
        engine = self._engine
        if isinstance(engine, _ClosedEngine):
            return
        try:
            engine.release()
        finally:  # closed, even when a signal handler's exception ends the release
            self._engine = _closed_engine(self.path)

    def drop(self) -> None:
        """Close and delete the directory with everything in it.

        Raises ``Locked`` when another process holds the directory: nothing is deleted,
        and this handle is closed all the same.
        """
        engine = self._engine
        self._engine = _closed_engine(self.path)
        if isinstance(engine, _ClosedEngine):
            engine = registry.acquire(self.path)
        engine.destroy()

    def __enter__(self) -> Any:
        """The handle itself: ``with Queue(path) as q:`` closes it on leaving the block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the handle (see ``close``); an exception in the block propagates."""
        self.close()

    def __del__(self) -> None:
        """Close the handle when it is garbage collected; never raises. Not while the
        interpreter finalizes: its daemon threads may have stopped holding the locks a
        close takes (the directories this process holds were closed at exit)."""
        if sys.is_finalizing():
            return
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        """``<Class 'path' N items>`` (or ``closed``)."""
        state = "closed" if self.closed else f"{len(self)} items"
        return f"<{type(self).__name__} {self.path!r} {state}>"

    # -- common reads ----------------------------------------------------------
    def __len__(self) -> int:
        """The number of ready items (reserved ones not counted); ``Closed`` after
        ``close()``."""
        return self._engine.length(self._ns)

    def __bool__(self) -> bool:
        """Whether any item is ready, as ``len(self) > 0``; ``Closed`` after ``close()``."""
        return len(self) > 0

    def _synced(self) -> None:
        if self._sync:
            self._engine.sync()

    def _append(self, lane: bytes, data: bytes, block: bool = False,
                timeout: Optional[float] = None) -> tuple[int, bytes]:
        """Store one encoded item; with ``sync``, durable before it returns."""
        if self._sync and not self.maxsize:
            return self._engine.push_durable(self._ns, [(lane, data)])[0]
        placed = self._engine.push_one(self._ns, lane, data, maxsize=self.maxsize,
                                       block=block, timeout=timeout)
        self._synced()
        return placed  # type: ignore[no-any-return]

    def _replace(self, lane: bytes, id: int, value: Any) -> tuple[int, bytes]:
        """Give the ready item ``id`` of ``lane`` a new value (every ``update``): its seq
        and key. The value is encoded before anything is written."""
        seq = check_id(id)
        key = self._engine.update(self._ns, lane, seq, self._encode(value))
        self._synced()
        return seq, key

    def _encode_all(self, values: list[Any]) -> list[bytes]:
        """Encode every value before anything is written (a TypeError names the bad one)."""
        try:
            return self._dumps_many(values)  # type: ignore[no-any-return]
        except Exception:
            return [self._encode(v) for v in values]

    def _append_run(self, lane: bytes, values: list[Any]
                    ) -> tuple[Sequence[int], Sequence[bytes]]:
        """Store values at the end of one lane atomically; their seqs and keys."""
        datas = self._encode_all(values)
        if self._sync and not self.maxsize:
            seqs, durable_keys = zip(*self._engine.push_durable(
                self._ns, [(lane, d) for d in datas]), strict=True)
            return seqs, durable_keys
        first, item_keys = self._engine.push_run(self._ns, lane, datas, maxsize=self.maxsize)
        self._synced()
        return range(first, first + len(item_keys)), item_keys

    def _append_many(self, entries: list[tuple[bytes, bytes]]) -> list[tuple[int, bytes]]:
        """Store encoded items atomically; with ``sync``, durable before it returns."""
        if self._sync and not self.maxsize:
            return self._engine.push_durable(self._ns, entries)
        placed = self._engine.push(self._ns, entries, maxsize=self.maxsize)
        self._synced()
        return placed  # type: ignore[no-any-return]

    # -- decoding ---------------------------------------------------------------
    @abc.abstractmethod
    def _where(self, lane: bytes) -> tuple[Optional[int], Optional[bytes]]:
        """The ``(priority, prefix)`` of an item in ``lane``: each structure's lanes read
        their own way."""

    @abc.abstractmethod
    def _make(self, entry: Entry, value: Any) -> Item:
        """The Item of an engine entry with its value (``_where`` written out, as every
        take builds one)."""

    def _item(self, entry: Entry, raw: bool = False) -> Item:
        """Turn an engine entry into an Item, decoding its value unless ``raw``."""
        return self._make(entry, entry[3] if raw else self._value(entry))

    def _value(self, entry: Entry) -> Any:
        """The decoded value of an entry; ``Undecodable`` naming it if the codec refuses."""
        try:
            return self._loads(entry[3])
        except Exception as exc:
            error = Undecodable(path=self.path, data=entry[3],
                                reason=_reason(self._codec, exc))
            error.locate(entry[1], entry[2], *self._where(entry[0]))
            raise error from exc

    def _decoding(self) -> tuple[list[Any], Check]:
        """The ``check=`` of one take, and the list of values it decodes (so nothing is
        decoded twice). Callers pass none for ``raw`` or a codec that cannot fail."""
        values: list[Any] = []
        loads, path, codec = self._loads, self.path, self._codec

        def check(datas: list[bytes]) -> None:
            values.clear()  # a call repeated after a takeover checks again
            try:
                if len(datas) == 1:  # a dequeue: append() costs less than extend(map())
                    values.append(loads(datas[0]))
                else:
                    values.extend(map(loads, datas))
            except Exception as exc:
                bad = len(values)
                raise Undecodable(path=path, data=datas[bad], reason=_reason(codec, exc),
                                  index=bad) from exc

        return values, check

    def _locate(self, exc: Undecodable, lane: Optional[bytes] = None, desc: bool = False,
                from_tail: bool = False) -> None:
        """Name the item a take refused: nothing was taken, so it is still ``exc.index``
        places into the order that take reads (unless another consumer moved it since;
        then the first item with the same bytes, if any)."""
        where: dict[str, Any] = {"lane": lane, "desc": desc, "from_tail": from_tail}
        try:
            entry: Optional[Entry] = self._engine.peek(self._ns, exc.index, **where)
            if entry is None or entry[3] != exc.data:
                entry = next((e for e in self._engine.scan(self._ns, **where)
                              if e[3] == exc.data), None)
        except DiskQueueError:
            entry = None
        if entry is not None:
            exc.locate(entry[1], entry[2], *self._where(entry[0]))

    def _items(self, entries: list[Entry], values: Sequence[Any],
               raw: bool = False) -> list[Item]:
        """Items of taken entries, with the values their check decoded."""
        if raw or self._plain:
            return [self._make(entry, entry[3]) for entry in entries]
        if len(values) != len(entries):  # no check ran (an engine without the hook)
            return [self._item(entry) for entry in entries]
        return list(map(self._make, entries, values))

    def _take(self, n: int, lane: Optional[bytes], *, desc: bool = False,
              from_tail: bool = False, lease: Optional[float] = None, block: bool = False,
              timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove (or, with ``lease``, reserve) up to ``n`` items, decoded before they are
        taken."""
        timeout = check_timeout(block, timeout)
        values, check = ((), None) if raw or self._plain else self._decoding()
        try:
            entries = self._engine.take(self._ns, n, lane=lane, desc=desc,
                                        from_tail=from_tail, lease=lease, block=block,
                                        timeout=timeout, check=check)
        except Undecodable as exc:
            self._locate(exc, lane, desc, from_tail)
            raise
        self._synced()
        return self._items(entries, values, raw)

    def _pop(self, lane: Optional[bytes], desc: bool, from_tail: bool, block: bool,
             timeout: Optional[float], raw: bool) -> Item:
        """Remove one item, decoded before it is taken (a hot path: positional)."""
        timeout = check_timeout(block, timeout)
        values, check = ((), None) if raw or self._plain else self._decoding()
        try:
            entry = self._engine.pop_one(self._ns, lane, desc=desc, from_tail=from_tail,
                                         block=block, timeout=timeout, check=check)
        except Undecodable as exc:
            self._locate(exc, lane, desc, from_tail)
            raise
        if self._sync:
            self._engine.sync()
        if values:
            return self._make(entry, values[0])
        return self._make(entry, entry[3] if check is None else self._value(entry))

    def _take_run(self, lane: bytes, n: int, *, from_tail: bool = False, block: bool = False,
                  timeout: Optional[float] = None, raw: bool = False) -> list[Item]:
        """Remove up to ``n`` items of one lane atomically: all of them decode, or none
        is taken."""
        check_count("n", n)
        timeout = check_timeout(block, timeout)
        if n == 0:
            return []
        values, check = ((), None) if raw or self._plain else self._decoding()
        try:
            seqs, pairs = self._engine.take_run(self._ns, lane, n, from_tail=from_tail,
                                                block=block, timeout=timeout, check=check)
        except Undecodable as exc:
            self._locate(exc, lane, False, from_tail)
            raise
        self._synced()
        priority, prefix = self._where(lane)
        if raw or self._plain:
            return items_run(seqs, pairs, None, priority, prefix)
        if len(values) != len(pairs):  # no check ran (an engine without the hook)
            return [self._item((lane, seq, key, data, 0))
                    for seq, (key, data) in zip(seqs, pairs, strict=True)]
        return items_run(seqs, pairs, values, priority, prefix)

    def _scan(self, **where: Any) -> Iterator[Item]:
        """Items in dequeue order, a page at a time (``Undecodable`` at one that does not
        decode: iteration cannot skip it silently)."""
        after = None
        while True:
            page = self._engine.scan(self._ns, after=after, **where)
            for entry in page:
                yield self._item(entry)
            if len(page) < 256:
                return
            after = (page[-1][0], page[-1][1])

    def clear(self) -> None:
        """Remove every item, reserved ones included. Ids keep counting. ``Closed`` after
        ``close()``."""
        self._engine.clear(self._ns)
        self._synced()


class Reliable(abc.ABC):
    """``reserve``/``ack``/``nack``: at-least-once consumption (not on Stack)."""

    _engine: EngineAPI
    _ns: bytes

    _synced: Callable[[], None]

    @abc.abstractmethod
    def _lane_of(self, item: Item) -> bytes:
        """The lane an Item of this structure lives in."""

    def _reservation(self, item_or_id: Item | int) -> tuple[bytes, int, Optional[int]]:
        if isinstance(item_or_id, Item):
            return self._lane_of(item_or_id), item_or_id.id, item_or_id.attempts or None
        seq = check_id(item_or_id)
        lanes = self._engine.find_reserved(self._ns, seq)
        if not lanes:
            raise NotReserved(f"item {seq} is not reserved")
        if len(lanes) > 1:
            raise ValueError(f"id {seq} is reserved on several levels; pass the Item instead")
        return lanes[0], seq, None

    def ack(self, item_or_id: Item | int) -> None:
        """Delete a reserved item for good.

        Raises ``NotReserved`` when it is not reserved any more (already acked or nacked,
        or its lease ended), ``ValueError`` for an id reserved on several levels (pass
        the ``Item``).
        """
        lane, seq, attempts = self._reservation(item_or_id)
        self._engine.ack(self._ns, lane, seq, attempts=attempts)
        self._synced()

    def nack(self, item_or_id: Item | int, *, front: bool = True) -> None:
        """Return a reserved item: to the front, or to the back with ``front=False``.

        Raises ``NotReserved`` as ``ack`` does.
        """
        lane, seq, attempts = self._reservation(item_or_id)
        self._engine.nack(self._ns, lane, seq, attempts=attempts, front=bool(front))
        self._synced()

    def in_flight(self) -> int:
        """How many items are reserved and not yet acked or nacked."""
        return self._engine.in_flight(self._ns)


class Watch:
    """A callback told of the new items of one directory: see :func:`watch`."""

    def __init__(self, engine: EngineAPI, callback: Callable[[int], None]) -> None:
        self._engine = engine
        self._callback = callback

    def stop(self) -> None:
        """Stop calling the callback; idempotent, never raises."""
        self._engine.unwatch(self._callback)

    def next_expiry(self) -> Optional[float]:
        """Return the reservations whose lease ended to the front now (the callback hears
        of them), and the ``time.monotonic()`` at which the next lease ends, or None.
        Raises ``Closed`` when the directory was closed."""
        return self._engine.next_expiry()


def watch(handle: Handle, callback: Callable[[int], None]) -> Optional[Watch]:
    """Call ``callback(n)`` whenever items may have become ready in ``handle``'s
    directory, as :mod:`diskqueue.engine.watches` says: from the thread that made the
    change, under the directory's lock, so the callback only schedules work. None when
    this process does not hold the directory (its items change in the holder's
    process: a blocking take waits for them there). Raises ``Closed`` when closed."""
    engine = handle._engine
    if not engine.watch(callback):
        return None
    return Watch(engine, callback)
