"""How values become bytes: msgpack (default), raw, json, pickle (only by name), or any
object with ``dumps``/``loads``."""

from __future__ import annotations

import json
import pickle
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
