"""When periodic tasks tick: every N seconds (aligned to the epoch) or on a cron schedule.

The last tick handled is recorded in the same batch that enqueues the job for it, so a
worker that restarts never enqueues one tick twice. Ticks missed while no worker ran
collapse into one run, enqueued as soon as a worker starts.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Optional, Union

from .._checks import check_duration
from .cron import Cron

Every = Union[float, int, dt.timedelta]
MIN_EVERY = 0.001


class Periodic:
    """A schedule: exactly one of ``every`` (seconds or timedelta) and ``cron``."""

    def __init__(self, every: Optional[Every] = None, cron: Optional[str] = None) -> None:
        if (every is None) == (cron is None):
            raise TypeError("periodic() takes exactly one of every= and cron=")
        self.cron = Cron(cron) if cron is not None else None
        self.every: Optional[float] = None
        if every is not None:
            seconds = check_duration("every", every, allow_none=False, positive=True,
                                     timedelta=True)
            assert seconds is not None
            if seconds < MIN_EVERY:  # ticks are recorded in ms: finer ones would collide
                raise ValueError(f"every must be at least {MIN_EVERY} seconds, not {every!r}")
            self.every = seconds

    def next_after(self, t: float) -> float:
        """The first tick strictly after epoch time ``t``."""
        if self.cron is not None:
            return self.cron.next_after(t)
        assert self.every is not None
        return (math.floor(t / self.every) + 1) * self.every

    def describe(self) -> str:
        """The schedule in words: ``every 5 s`` or ``cron '*/5 * * * *'``."""
        return f"cron {self.cron.expression!r}" if self.cron else f"every {self.every:g} s"

