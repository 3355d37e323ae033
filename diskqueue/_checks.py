"""Checks of the durations the public API takes.

Every duration (timeouts, leases, delays, backoffs, grace periods, periods of rate
limits and periodic tasks) goes through :func:`check_duration`, so each one refuses
the same things the same way: a non-number is a ``TypeError``; NaN is a ``ValueError``
naming the argument (it compares false with everything, so a wait on it would spin or
never end); infinity is a ``ValueError`` too, except where it plainly means "for ever"
(a blocking timeout, a grace period), and then it means exactly what ``None`` does.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
from typing import Any, Optional

# A wait longer than this cannot be handed to a lock (it would raise OverflowError):
# a timeout beyond it (292 years) waits for ever, like None.
FOREVER = threading.TIMEOUT_MAX


def check_duration(name: str, value: Any, *, allow_none: bool = True,
                   allow_inf: bool = False, positive: bool = False,
                   timedelta: bool = False) -> Optional[float]:
    """``value`` as seconds (a float), or a ``TypeError``/``ValueError`` naming ``name``.

    ``allow_none``: None passes (returned as None). ``allow_inf``: +inf, or a wait too
    long for a lock, means "for ever" and is returned as None; else it is refused.
    ``positive``: 0 is refused too (negatives always are). ``timedelta``: a
    :class:`datetime.timedelta` is taken as its seconds.
    """
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a number of seconds, not None")
    if timedelta and isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a number of seconds or a timedelta" if timedelta else "a number of seconds"
        raise TypeError(f"{name} must be {kind}, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:  # an int too big for a float
        seconds = math.inf if value > 0 else -math.inf
    if math.isnan(seconds):
        raise ValueError(f"{name} must be a number of seconds, not NaN")
    if seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound} seconds, not {value!r}")
    if allow_inf and seconds > FOREVER:
        return None
    if math.isinf(seconds):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    return seconds


def check_timeout(block: bool, timeout: Any) -> Optional[float]:
    """A blocking call's ``timeout``: None or ``inf`` waits for ever (returned as None),
    else seconds >= 0. A call that does not block ignores it, but NaN is refused
    everywhere."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
    if timeout != timeout:  # NaN
        raise ValueError("'timeout' must be a number of seconds, not NaN")
    if not block:
        return None
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return check_duration("timeout", timeout, allow_inf=True)


def check_lease(lease: Any) -> float:
    """A reservation's ``lease``: finite seconds > 0."""
    seconds = check_duration("lease", lease, allow_none=False, positive=True)
    assert seconds is not None
    return seconds


def check_path(path: Any) -> str:
    """A handle's ``path`` as an absolute, resolved ``str``.

    Raises ``TypeError`` for anything but a ``str`` or ``os.PathLike`` of one (bytes
    included), ``ValueError`` for an empty path.
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be str or os.PathLike, not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError("path must be a non-empty str path")
    return os.path.realpath(text)


def check_count(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` checked as an int count of at least ``minimum``.

    Raises ``TypeError`` naming ``name`` when it is not an int (a bool is not one),
    ``ValueError`` when it is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return value


def check_id(value: Any) -> int:
    """``value`` checked as an item id; ``TypeError`` when it is not an int (nor a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"id must be an int, not {type(value).__name__}")
    return value
