"""``rate_limit="100/m"``: a token bucket per task, in each worker process.

A job whose task has no token left is not run: it goes back to the schedule, due when
the next token comes, so it neither blocks a worker thread nor the jobs behind it.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([smhd])\s*$")


def parse_rate(spec: str) -> tuple[int, float]:
    """``"100/m"`` -> (100, 60.0); also ``"10/s"``, ``"5/h"``, ``"1000/d"``, ``"3/10s"``."""
    if not isinstance(spec, str):
        raise TypeError(f"rate_limit must be a str such as '100/m', not {type(spec).__name__}")
    match = _RATE.match(spec)
    if not match:
        raise ValueError(f"rate_limit must look like '100/m' (per s, m, h or d), not {spec!r}")
    count, span, unit = match.groups()
    if span == ".":
        raise ValueError(f"rate_limit must look like '100/m' (per s, m, h or d), not {spec!r}")
    seconds = float(span or 1) * _UNITS[unit]
    if int(count) <= 0 or seconds <= 0:
        raise ValueError(f"rate_limit must allow at least one start per period: {spec!r}")
    try:  # a period or count too big for a float would make the bucket inf, 0 or NaN
        rate = float(count) / seconds
    except OverflowError:
        rate = math.inf
    if not math.isfinite(seconds) or not 0 < rate < math.inf:
        raise ValueError(f"rate_limit must be a finite number of starts per finite period "
                         f"of seconds: {spec!r}")
    return int(count), seconds


class TokenBucket:
    """``count`` starts per ``period`` seconds, with bursts up to ``count``."""

    def __init__(self, count: int, period: float, clock: Callable[[], float]) -> None:
        self.capacity = float(count)
        self.rate = count / period
        self.clock = clock
        self.tokens = float(count)
        self.stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a start: 0.0 when one is free now, else the seconds until the start
        reserved for the caller (reservations queue up: the n-th waits n periods)."""
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1.0
            if self.tokens >= 0.0:
                return 0.0
            return -self.tokens / self.rate
