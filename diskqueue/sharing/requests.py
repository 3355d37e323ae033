"""What a client may ask of a holder, checked before anything runs.

The wire's method table and each method's signature are derived from
:class:`diskqueue.engine.api.WireAPI`, the engine's written interface: a request names
one of :data:`METHODS` with arguments that must bind (``inspect.Signature.bind``) to
that method's signature there, each of the type its annotation names (msgpack sends
tuples as lists), counts and offsets not negative, durations neither negative nor NaN,
and an optional deadline (contract: an absolute ``time.time()``), then, for a push,
an optional ``[slot, seq, again]`` (:mod:`diskqueue.sharing.receipts`). A bad request is a
``TypeError`` or ``ValueError`` for the client, never a call into the engine.
Arguments only the holder itself may pass (:data:`~diskqueue.engine.api.LOCAL_ONLY`:
``owner``, ``check``, ...) do not exist on the wire.

The client sends required arguments by position and flags by name. The wire also
takes a flag by position, in the interface's order, as it always did.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Optional

from ..engine.api import LOCAL_ONLY, WireAPI

# Engine methods a client may call, by name: every method of the wire interface.
METHODS = frozenset(name for name, value in vars(WireAPI).items()
                    if inspect.isfunction(value) and not name.startswith("_"))
TAKES = frozenset({"take", "take_run", "take_first", "pop_one"})
BLOCKING = TAKES | {"push_one", "push", "push_run"}
_COUNTS = frozenset({"n", "offset", "seq", "limit", "maxsize", "attempts"})
_DURATIONS = frozenset({"timeout", "lease"})


class Request(NamedTuple):
    """A checked request: what to call, every argument by name (defaults filled in),
    and the time after which it must not start."""

    method: str
    arguments: dict[str, Any]
    deadline: Optional[float]
    # (slot, seq, again) of a push that asks for a receipt; again: sent before
    numbered: Optional[tuple[int, int, bool]] = None


Check = Callable[[object], bool]


class _Param(NamedTuple):
    name: str
    check: Check
    default: Any  # inspect.Parameter.empty when required
    what: str  # the type, as an error message says it


class _Shape(NamedTuple):
    method: str
    signature: inspect.Signature  # what a request's arguments bind to
    names: tuple[str, ...]  # every parameter, in order (each may come by position)
    by_name: dict[str, _Param]  # every parameter
    required: tuple[str, ...]  # the parameters without a default
    defaults: dict[str, Any]  # of the parameters that have one


_shapes: dict[str, _Shape] = {}


def _shape(method: str) -> _Shape:
    """The parameters of an engine method a client may pass, with their checks
    (compiled once per method, from the interface: the hot path only runs them)."""
    shape = _shapes.get(method)
    if shape is None:
        function = getattr(WireAPI, method)
        hints = typing.get_type_hints(function)
        params, by_name = [], {}
        for p in inspect.signature(function).parameters.values():
            if p.name == "self" or p.name in LOCAL_ONLY:
                continue
            wanted = hints.get(p.name, Any)
            by_name[p.name] = _Param(p.name, _checker(wanted), p.default, _say(wanted))
            # The wire takes every argument by position too, in the interface's order.
            params.append(p.replace(kind=p.POSITIONAL_OR_KEYWORD, annotation=p.empty))
        defaults = {p.name: p.default for p in params if p.default is not p.empty}
        shape = _shapes[method] = _Shape(
            method, inspect.Signature(params), tuple(by_name), by_name,
            tuple(name for name in by_name if name not in defaults), defaults)
    return shape


def wire_signature(method: str) -> inspect.Signature:
    """The signature a request for ``method`` binds to (its interface's, without the
    holder's own arguments)."""
    return _shape(method).signature


def parse(request: object) -> Request:
    """The request, checked; ``TypeError``/``ValueError`` saying what is wrong."""
    if type(request) is not list or len(request) not in (3, 4, 5):
        raise TypeError("a request is [method, args, kwargs], [method, args, kwargs, "
                        "deadline] or [method, args, kwargs, deadline, [slot, seq, again]]")
    method, args, kwargs = request[:3]
    deadline = request[3] if len(request) >= 4 else None
    numbered = _numbered(request[4]) if len(request) == 5 else None
    if type(method) is not str or method not in METHODS:
        raise TypeError(f"no such call: {method!r}")
    if type(args) is not list or type(kwargs) is not dict:
        raise TypeError(f"{method}(): arguments must be a list and a dict by name")
    if deadline is not None and not (_is_float(deadline) and not math.isnan(deadline)):
        raise TypeError(f"a deadline is a time.time() float, not {deadline!r}")
    shape = _shape(method)
    arguments = _bind(shape, args, kwargs)
    by_name = shape.by_name
    for name, value in arguments.items():
        _check(method, by_name[name], value)
    if len(arguments) < len(by_name):
        arguments = {**shape.defaults, **arguments}
    return Request(method, arguments, deadline, numbered)


def _numbered(value: object) -> Optional[tuple[int, int, bool]]:
    """A push's ``[slot, seq, again]``, checked (None: no receipt asked)."""
    if value is None:
        return None
    if (type(value) is not list or len(value) != 3 or type(value[0]) is not int
            or type(value[1]) is not int or type(value[2]) is not bool
            or not 0 <= value[0] < 1 << 32 or value[1] < 0):
        raise TypeError(f"a push's number is [slot, seq, again], not {value!r}")
    return value[0], value[1], value[2]


def _bind(shape: _Shape, args: list[Any], kwargs: dict[Any, Any]) -> dict[str, Any]:
    """The arguments by name, as ``inspect.Signature.bind`` binds them to the wire
    signature (defaults not filled in). The common request binds in a quick loop; any
    other goes to ``bind``, which binds it the same way or says what is wrong."""
    names = shape.names
    if len(args) <= len(names):
        arguments = dict(zip(names, args))  # noqa: B905 (args may be fewer)
        for name, value in kwargs.items():
            if name in arguments or name not in shape.by_name:
                break
            arguments[name] = value
        else:
            if all(name in arguments for name in shape.required):
                return arguments
    method = shape.method
    if any(type(name) is not str for name in kwargs):
        raise TypeError(f"{method}(): argument names must be strings")
    try:
        return dict(shape.signature.bind(*args, **kwargs).arguments)
    except TypeError as exc:
        raise TypeError(f"{method}(): {exc}") from None


def _check(method: str, param: _Param, value: object) -> None:
    if not param.check(value):
        raise TypeError(f"{method}(): {param.name} must be {param.what}, "
                        f"not {type(value).__name__}")
    name = param.name
    if name in _COUNTS and type(value) is int and value < 0:
        raise ValueError(f"{method}(): {name} must not be negative, got {value}")
    if name in _DURATIONS and value is not None and not value >= 0:  # type: ignore[operator]
        raise ValueError(f"{method}(): {name} must be a number of seconds >= 0, "
                         f"got {value}")


_SEQS = (list, tuple)


def _byte_rows(width: int, nullable: frozenset[int] = frozenset()) -> Check:
    """Rows of ``width`` bytes each (None allowed at the places in ``nullable``),
    checked in one loop: a batch's entries, or its record writes."""
    def rows(value: Any) -> bool:
        if type(value) not in _SEQS:
            return False
        for row in value:
            if type(row) not in _SEQS or len(row) != width:
                return False
            for at, cell in enumerate(row):
                if type(cell) is not bytes and not (cell is None and at in nullable):
                    return False
        return True
    return rows


def _is_float(value: object) -> bool:
    """A float or an int (NaN passes here: where it matters, the value check says no)."""
    return type(value) in (float, int)


def _checker(wanted: Any) -> Check:
    """A function telling whether a value (as msgpack decoded it) is of a type."""
    if wanted is Any:
        return lambda value: True
    if wanted is type(None):
        return lambda value: value is None
    if wanted is float:
        return _is_float
    if wanted in (bool, int, bytes, str):
        return lambda value: type(value) is wanted
    origin, params = typing.get_origin(wanted), typing.get_args(wanted)
    if origin in (typing.Union, types.UnionType):
        checks = [_checker(p) for p in params]
        if len(checks) == 2 and type(None) in params:  # Optional: the common case
            other = checks[params.index(type(None)) ^ 1]
            return lambda value: value is None or other(value)
        return lambda value: any(check(value) for check in checks)
    if origin is tuple:
        if all(p in (bytes, int, str) for p in params):  # the hot case: (key, data)
            kinds = params

            def simple(value: Any) -> bool:
                return type(value) in _SEQS and len(value) == len(kinds) and all(
                    type(v) is k for v, k in zip(value, kinds, strict=True))
            return simple
        parts = [_checker(p) for p in params]

        def fixed(value: Any) -> bool:  # a loop: a generator per call costs more
            if type(value) not in _SEQS or len(value) != len(parts):
                return False
            for check, v in zip(parts, value):  # noqa: B905 (lengths checked)
                if not check(v):
                    return False
            return True
        return fixed
    if origin in (list, Iterable, Sequence):
        inner = typing.get_args(params[0])
        if typing.get_origin(params[0]) is tuple and all(
                p in (bytes, Optional[bytes]) for p in inner):
            # a batch's entries, or record writes: checked in one loop
            return _byte_rows(len(inner), frozenset(
                at for at, p in enumerate(inner) if p is not bytes))
        each = _checker(params[0])

        def every(value: Any) -> bool:
            if type(value) not in _SEQS:
                return False
            for v in value:
                if not each(v):
                    return False
            return True
        return every
    return lambda value: False  # a type the wire has no use for (a dict, a callable)


def _say(wanted: Any) -> str:
    name = getattr(wanted, "__name__", None)
    return name if name and not typing.get_args(wanted) else str(wanted).replace(
        "typing.", "").replace("collections.abc.", "")
