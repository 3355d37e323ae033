"""``TaskOptions``: how a task runs (retries, backoff, timeout, queue, priority, rate
limit, result ttl), checked once when the task is registered."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

from .._checks import check_duration
from . import layout as records
from .ratelimit import parse_rate

DEFAULT_RESULT_TTL = 86400.0


@dataclass(frozen=True)
class TaskOptions:
    """How a task runs; checked when it is registered.

    Raises TypeError or ValueError for an option of the wrong type or out of range.
    """

    retries: int = 0
    backoff: float = 1.0
    max_backoff: float = 3600.0
    timeout: Optional[float] = None
    queue: str = "default"
    priority: int = 0
    rate_limit: Optional[str] = None
    result_ttl: Optional[float] = DEFAULT_RESULT_TTL

    def __post_init__(self) -> None:
        """Check the options (TypeError, ValueError) and store durations as seconds."""
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise TypeError(f"retries must be an int, not {type(self.retries).__name__}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, not {self.retries}")
        # Stored as checked: seconds as floats, and infinity (no limit, kept for ever)
        # as None, which is what the rest of the code reads as "no limit".
        fix = functools.partial(object.__setattr__, self)  # the dataclass is frozen
        fix("backoff", check_duration("backoff", self.backoff, allow_none=False,
                                      timedelta=True))
        fix("max_backoff", check_duration("max_backoff", self.max_backoff, allow_none=False,
                                          timedelta=True))
        fix("timeout", check_duration("timeout", self.timeout, allow_inf=True, positive=True,
                                      timedelta=True))
        records.check_queue(self.queue)
        records.check_priority(self.priority)
        if self.rate_limit is not None:
            parse_rate(self.rate_limit)
        fix("result_ttl", check_duration("result_ttl", self.result_ttl, allow_inf=True,
                                         timedelta=True))
