"""What a client may ask of a holder, checked before anything runs.

A request names one of :data:`METHODS` (engine methods, by name) with arguments that
must bind to that method's signature, each of the type its annotation names (msgpack
sends tuples as lists), counts and offsets not negative, durations neither negative
nor NaN, and an optional deadline (contract: an absolute ``time.time()``). A bad request
is a ``TypeError`` or ``ValueError`` for the client, never a call into the engine.
Arguments only the holder itself may pass (``owner``, ``check``) do not exist on the
wire.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Optional

# Engine methods a client may call, by name.
METHODS = frozenset({
    "push_one", "push", "push_run", "push_unless", "push_durable", "take", "take_run",
    "take_first", "pop_one",
    "find_reserved", "ack", "ack_many", "nack", "in_flight", "peek", "get", "update",
    "length", "lanes", "scan", "clear", "task_done", "join", "sync", "write_records",
    "get_record", "scan_records", "ensure_kind", "info",
})
TAKES = frozenset({"take", "take_run", "take_first", "pop_one"})
BLOCKING = TAKES | {"push_one", "push", "push_run"}
_LOCAL_ONLY = frozenset({"self", "owner", "check"})
_COUNTS = frozenset({"n", "offset", "seq", "limit", "maxsize", "attempts"})
_DURATIONS = frozenset({"timeout", "lease"})
# Names the engine's annotations use, for reading them back as types.
_NAMES: dict[str, Any] = {
    "Optional": Optional, "Any": Any, "Iterable": Iterable, "Sequence": Sequence,
    "RecordOps": Iterable[tuple[bytes, bytes, Optional[bytes]]],
}


class Request(NamedTuple):
    method: str
    arguments: dict[str, Any]  # every argument by name, defaults filled in
    deadline: Optional[float]


class _Shape(NamedTuple):
    signature: inspect.Signature
    types: dict[str, Any]


_shapes: dict[str, _Shape] = {}


def _shape(method: str) -> _Shape:
    shape = _shapes.get(method)
    if shape is None:
        from .engine import Engine

        full = inspect.signature(getattr(Engine, method))
        params = [p for p in full.parameters.values() if p.name not in _LOCAL_ONLY]
        types = {p.name: _type(p.annotation) for p in params}
        shape = _shapes[method] = _Shape(full.replace(parameters=params), types)
    return shape


def _type(annotation: Any) -> Any:
    if isinstance(annotation, str):
        try:
            return eval(annotation, dict(_NAMES))  # our own source's annotations
        except NameError:
            return Any
    return annotation


def parse(request: object) -> Request:
    """The request, checked; ``TypeError``/``ValueError`` saying what is wrong."""
    if not isinstance(request, list) or len(request) not in (3, 4):
        raise TypeError("a request is [method, args, kwargs] or [method, args, kwargs, "
                        "deadline]")
    method, args, kwargs = request[:3]
    deadline = request[3] if len(request) == 4 else None
    if not isinstance(method, str) or method not in METHODS:
        raise TypeError(f"no such call: {method!r}")
    if not isinstance(args, list) or not isinstance(kwargs, dict) \
            or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(f"{method}(): arguments must be a list and a dict by name")
    if deadline is not None and not _is(deadline, float):
        raise TypeError(f"a deadline is a time.time() float, not {deadline!r}")
    shape = _shape(method)
    try:
        bound = shape.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{method}(): {exc}") from None
    for name, value in bound.arguments.items():
        wanted = shape.types[name]
        if not _is(value, wanted):
            raise TypeError(f"{method}(): {name} must be {_say(wanted)}, "
                            f"not {type(value).__name__}")
        if name in _COUNTS and isinstance(value, int) and value < 0:
            raise ValueError(f"{method}(): {name} must not be negative, got {value}")
        if name in _DURATIONS and value is not None and not value >= 0:
            raise ValueError(f"{method}(): {name} must be a number of seconds >= 0, "
                             f"got {value}")
    bound.apply_defaults()
    return Request(method, dict(bound.arguments), deadline)


def _is(value: object, wanted: Any) -> bool:
    """True when ``value`` (as msgpack decoded it) is of the annotated type."""
    if wanted is Any:
        return True
    if wanted is type(None):
        return value is None
    if wanted is bool:
        return type(value) is bool
    if wanted is int:
        return type(value) is int
    if wanted is float:
        return type(value) in (int, float) and not math.isnan(value)  # type: ignore[arg-type]
    if wanted in (bytes, str):
        return type(value) is wanted
    origin, params = typing.get_origin(wanted), typing.get_args(wanted)
    if origin in (typing.Union, types.UnionType):
        return any(_is(value, p) for p in params)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and len(value) == len(params) and all(
            _is(v, p) for v, p in zip(value, params, strict=True))
    if origin in (list, Iterable, Sequence):
        return isinstance(value, (list, tuple)) and all(_is(v, params[0]) for v in value)
    return False  # a type the wire has no use for (a dict, a callable)


def _say(wanted: Any) -> str:
    name = getattr(wanted, "__name__", None)
    return name if name and not typing.get_args(wanted) else str(wanted).replace(
        "typing.", "").replace("collections.abc.", "")
