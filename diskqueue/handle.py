"""What every structure's handle shares: opening, codecs, closing, iteration, reservations."""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, Optional

from . import codecs
from . import engine as engine_mod
from .errors import Closed, NotReserved
from .item import Item


class _ClosedEngine:
    """Stands in for the engine after ``close()``: any use raises ``Closed``."""

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> NoReturn:
        raise Closed(f"{self._path} is closed; open it again to use it")


def check_path(path: Any) -> str:
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be str or os.PathLike, not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError("path must be a non-empty str path")
    return os.path.realpath(text)


def check_count(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return value


def check_timeout(block: bool, timeout: Optional[float]) -> None:
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
        if block and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")


def check_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"id must be an int, not {type(value).__name__}")
    return value


class Handle(abc.ABC):
    """An open structure in a directory. Subclasses say what kind and how items look."""

    _kind = ""
    _accepts: tuple[str, ...] = ()
    _ns = b""

    def __init__(self, path: str | os.PathLike[str], *, codec: codecs.CodecSpec = "msgpack",
                 sync: bool = False, maxsize: int = 0,
                 connect_timeout: float = 10.0) -> None:
        self.path = check_path(path)
        if not isinstance(sync, bool):
            raise TypeError(f"sync must be a bool, not {type(sync).__name__}")
        self.maxsize = check_count("maxsize", maxsize)
        dumps, self._loads = codecs.resolve(codec)
        self._encode = codecs.encoder(dumps)
        # Hot paths call the bare dumps of a named codec and fall back to _encode on failure.
        self._dumps = dumps if isinstance(codec, str) else self._encode
        self._dumps_many = codecs.many(self._dumps)
        self._sync = sync
        engine = engine_mod.acquire(self.path, connect_timeout=connect_timeout)
        try:
            engine.ensure_kind(self._kind, self._accepts)
        except BaseException:
            engine.release()
            raise
        self._engine: Any = engine

    # -- lifecycle -------------------------------------------------------------
    @property
    def role(self) -> str:
        """``"owner"`` when this process holds the directory, ``"client"`` when another
        process does and serves this one over the directory's socket."""
        return self._engine.role  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        return isinstance(self._engine, _ClosedEngine)

    def close(self) -> None:
        """Close this handle; idempotent. Later calls raise ``Closed``."""
        engine = self._engine
        if isinstance(engine, _ClosedEngine):
            return
        self._engine = _ClosedEngine(self.path)
        engine.release()

    def drop(self) -> None:
        """Close and delete the directory with everything in it."""
        engine = self._engine
        self._engine = _ClosedEngine(self.path)
        if isinstance(engine, _ClosedEngine):
            engine = engine_mod.acquire(self.path)
        engine.destroy()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} items"
        return f"<{type(self).__name__} {self.path!r} {state}>"

    # -- common reads ----------------------------------------------------------
    def __len__(self) -> int:
        return self._engine.length(self._ns)

    def __bool__(self) -> bool:
        return len(self) > 0

    def _synced(self) -> None:
        if self._sync:
            self._engine.sync()

    def _append(self, lane: bytes, data: bytes, block: bool = False,
                timeout: Optional[float] = None) -> tuple[int, bytes]:
        """Store one encoded item; with ``sync``, durable before it returns."""
        if self._sync and not self.maxsize:
            return self._engine.push_durable(self._ns, [(lane, data)])[0]  # type: ignore[no-any-return]
        placed = self._engine.push_one(self._ns, lane, data, self.maxsize, block, timeout)
        self._synced()
        return placed  # type: ignore[no-any-return]

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
            seqs, item_keys = zip(*self._engine.push_durable(
                self._ns, [(lane, d) for d in datas]), strict=True)
            return seqs, item_keys
        first, item_keys = self._engine.push_run(self._ns, lane, datas, self.maxsize)
        self._synced()
        return range(first, first + len(item_keys)), item_keys

    def _append_many(self, entries: list[tuple[bytes, bytes]]) -> list[tuple[int, bytes]]:
        """Store encoded items atomically; with ``sync``, durable before it returns."""
        if self._sync and not self.maxsize:
            return self._engine.push_durable(self._ns, entries)  # type: ignore[no-any-return]
        placed = self._engine.push(self._ns, entries, self.maxsize)
        self._synced()
        return placed  # type: ignore[no-any-return]

    @abc.abstractmethod
    def _item(self, entry: engine_mod.Entry) -> Item:
        """Turn an engine entry into an Item: each structure says how its lanes read."""

    def _scan(self, **where: Any) -> Iterator[Item]:
        after = None
        while True:
            page = self._engine.scan(self._ns, after=after, **where)
            for entry in page:
                yield self._item(entry)
            if len(page) < 256:
                return
            after = (page[-1][0], page[-1][1])

    def clear(self) -> None:
        """Remove every item, reserved ones included. Ids keep counting."""
        self._engine.clear(self._ns)
        self._synced()


class Reliable(abc.ABC):
    """``reserve``/``ack``/``nack``: at-least-once consumption (not on Stack)."""

    _engine: Any
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
        """Delete a reserved item for good."""
        lane, seq, attempts = self._reservation(item_or_id)
        self._engine.ack(self._ns, lane, seq, attempts)
        self._synced()

    def nack(self, item_or_id: Item | int, *, front: bool = True) -> None:
        """Return a reserved item: to the front, or to the back with ``front=False``."""
        lane, seq, attempts = self._reservation(item_or_id)
        self._engine.nack(self._ns, lane, seq, attempts, bool(front))
        self._synced()

    def in_flight(self) -> int:
        """How many items are reserved and not yet acked or nacked."""
        return self._engine.in_flight(self._ns)


def check_lease(lease: Any) -> float:
    if isinstance(lease, bool) or not isinstance(lease, (int, float)):
        raise TypeError(f"lease must be a number of seconds, not {type(lease).__name__}")
    if not lease > 0:
        raise ValueError(f"lease must be > 0 seconds, not {lease}")
    return float(lease)
