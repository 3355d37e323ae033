"""How values become bytes: msgpack (default), raw, json, pickle (only by name), or any
object with ``dumps``/``loads``; and :data:`TASK_MSGPACK`, the task layer's msgpack that
also holds tuples, sets, dates and times, decimals and UUIDs."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import pickle
import threading
import uuid
from collections.abc import Callable
from typing import Any, Protocol, Union

import msgpack


class Codec(Protocol):
    """What ``codec=`` accepts besides a name: any object with ``dumps`` and ``loads``."""

    def dumps(self, obj: Any) -> bytes:
        """``obj`` as bytes; raise (any exception) for a value it cannot encode, which the
        handle reports as a ``TypeError`` and stores nothing."""
        ...

    def loads(self, data: bytes) -> Any:
        """The value ``data`` encodes; raise (any exception) for bytes it cannot decode,
        which the handle reports as ``Undecodable`` and leaves the item in place."""
        ...


CodecSpec = Union[str, Codec]


class _Pair:
    __slots__ = ("dumps", "loads", "name")

    def __init__(self, name: str, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]):
        self.name = name
        self.dumps = dumps
        self.loads = loads


def _raw_dumps(obj: Any) -> bytes:
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    raise TypeError(f"the raw codec stores bytes-like values only, not {type(obj).__name__}")


def identity(data: bytes) -> bytes:
    """The raw codec's ``loads``: the bytes as stored. It cannot fail, so takes with it
    need no decoding check."""
    return data


def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


_NAMED = {
    "msgpack": _Pair(
        "msgpack",
        msgpack.packb,
        lambda data: msgpack.unpackb(data, raw=False, strict_map_key=False),
    ),
    "raw": _Pair("raw", _raw_dumps, identity),
    "json": _Pair("json", _json_dumps, json.loads),
    "pickle": _Pair(
        "pickle", lambda obj: pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), pickle.loads
    ),
}


def _raw_dumps_many(values: list[Any]) -> list[bytes]:
    if set(map(type, values)) <= {bytes}:  # the common case, checked in C
        return values
    return [_raw_dumps(v) for v in values]


def many(dumps: Callable[[Any], bytes]) -> Callable[[list[Any]], list[bytes]]:
    """``dumps`` over a list of values."""
    if dumps is _raw_dumps:
        return _raw_dumps_many
    return lambda values: list(map(dumps, values))


def resolve(codec: CodecSpec) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """Return ``(dumps, loads)`` for a codec name or object, or raise a clear error."""
    if isinstance(codec, str):
        try:
            pair = _NAMED[codec]
        except KeyError:
            raise ValueError(
                f"unknown codec {codec!r}; use one of {sorted(_NAMED)} "
                "or an object with dumps() and loads()"
            ) from None
        return pair.dumps, pair.loads
    dumps = getattr(codec, "dumps", None)
    loads = getattr(codec, "loads", None)
    if not callable(dumps) or not callable(loads):
        raise TypeError(
            "codec must be a name or an object with dumps(obj) -> bytes and loads(bytes)"
        )
    return dumps, loads


def encoder(dumps: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """Wrap ``dumps`` so that any failure to encode is a ``TypeError`` naming the value's type."""

    def encode(value: Any) -> bytes:
        try:
            data = dumps(value)
        except TypeError:
            raise
        except Exception as exc:  # msgpack's OverflowError, ValueError for cycles, …
            raise TypeError(
                f"cannot encode a value of type {type(value).__name__}: {exc}"
            ) from exc
        if not isinstance(data, bytes):
            if isinstance(data, (bytearray, memoryview)):
                return bytes(data)
            raise TypeError(f"codec dumps() returned {type(data).__name__}, not bytes")
        return data

    return encode


# -- msgpack for task arguments and results: more types, as msgpack ext types ---------------
# Codes of the ext types (stable: they are on disk). Plain msgpack values are stored as
# before, so a record written without any of these reads the same either way.
_EXT_TUPLE, _EXT_SET, _EXT_FROZENSET = 1, 2, 3
_EXT_DATETIME, _EXT_DATE, _EXT_TIME, _EXT_TIMEDELTA = 4, 5, 6, 7
_EXT_DECIMAL, _EXT_UUID = 8, 9

# Subclasses of the msgpack types (an IntEnum, an OrderedDict, a str subclass...) are
# stored as their base type, as plain msgpack stores them; checked in this order.
_BASES: tuple[type, ...] = (int, float, str, bytes, dict, list)


def _ext_default(obj: Any) -> Any:
    """What msgpack cannot store itself (``strict_types``: tuples and subclasses too)."""
    if isinstance(obj, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _ext_packb(list(obj)))
    if isinstance(obj, (set, frozenset)):
        code = _EXT_FROZENSET if isinstance(obj, frozenset) else _EXT_SET
        return msgpack.ExtType(code, _ext_packb(list(obj)))
    if isinstance(obj, dt.datetime):
        return msgpack.ExtType(_EXT_DATETIME, obj.isoformat().encode())
    if isinstance(obj, dt.date):
        return msgpack.ExtType(_EXT_DATE, obj.isoformat().encode())
    if isinstance(obj, dt.time):
        return msgpack.ExtType(_EXT_TIME, obj.isoformat().encode())
    if isinstance(obj, dt.timedelta):
        return msgpack.ExtType(_EXT_TIMEDELTA,
                               _ext_packb([obj.days, obj.seconds, obj.microseconds]))
    if isinstance(obj, decimal.Decimal):
        return msgpack.ExtType(_EXT_DECIMAL, str(obj).encode())
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(_EXT_UUID, obj.bytes)
    for base in _BASES:
        if isinstance(obj, base):
            return base(obj)
    raise TypeError(f"can not serialize {type(obj).__name__!r} object")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_TUPLE:
        return tuple(_ext_unpackb(data))
    if code == _EXT_SET:
        return set(_ext_unpackb(data))
    if code == _EXT_FROZENSET:
        return frozenset(_ext_unpackb(data))
    if code == _EXT_DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _EXT_DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _EXT_TIME:
        return dt.time.fromisoformat(data.decode())
    if code == _EXT_TIMEDELTA:
        days, seconds, micros = _ext_unpackb(data)
        return dt.timedelta(days, seconds, micros)
    if code == _EXT_DECIMAL:
        return decimal.Decimal(data.decode())
    if code == _EXT_UUID:
        return uuid.UUID(bytes=data)
    return msgpack.ExtType(code, data)  # another program's ext type: kept as it is


_packers = threading.local()  # each thread's idle Packers (building one costs more than
# packing a job record); a nested call, from _ext_default, takes another one


def _ext_packb(obj: Any) -> bytes:
    try:
        packer = _packers.idle.pop()
    except (AttributeError, IndexError):
        packer = msgpack.Packer(default=_ext_default, strict_types=True)
    data: bytes = packer.pack(obj)  # on an error the packer is dropped, never reused
    try:
        _packers.idle.append(packer)
    except AttributeError:
        _packers.idle = [packer]
    return data


# a partial, not a def: every job record read goes through it, and a frame costs
_ext_unpackb = functools.partial(msgpack.unpackb, raw=False, strict_map_key=False,
                                 ext_hook=_ext_hook)


class TaskMsgpack:
    """The codec of task arguments and results (``TaskQueue``'s default): msgpack, plus
    ``tuple`` (kept a tuple), ``set``, ``frozenset``, ``datetime``, ``date``, ``time``,
    ``timedelta``, ``Decimal`` and ``UUID`` as msgpack ext types. An aware datetime or
    time comes back with a fixed UTC offset (a ``zoneinfo`` zone is not kept)."""

    name = "msgpack"

    @staticmethod
    def dumps(obj: Any) -> bytes:
        """``obj`` as bytes; raises TypeError (or msgpack's error) for what it cannot hold."""
        return _ext_packb(obj)

    @staticmethod
    def loads(data: bytes) -> Any:
        """The value of ``data``; raises msgpack's errors on bad data."""
        return _ext_unpackb(data)

    @staticmethod
    def packer() -> Callable[[Any], bytes]:
        """A ``dumps`` of its own, for one thread packing many values in a row (a batch of
        job records): the same bytes, without finding a Packer per value. It raises
        msgpack's own errors (TypeError, OverflowError, ValueError...) as they are."""
        return msgpack.Packer(default=_ext_default, strict_types=True).pack  # type: ignore[no-any-return]


TASK_MSGPACK = TaskMsgpack()
