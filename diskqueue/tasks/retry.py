"""``Retry`` and the backoff between attempts.

A failed attempt with retries left waits ``backoff * 2 ** (failures - 1)`` seconds, capped
at ``max_backoff``, with "equal jitter": the actual wait is drawn uniformly from the upper
half of that, so workers that failed together do not all come back together.
"""

from __future__ import annotations

import random
from typing import Optional

from .._checks import check_duration


class Retry(Exception):
    """Raise it inside a task to ask for another attempt.

    ``delay`` seconds from now (``None``: the task's backoff). It counts against the
    task's ``retries`` like any failure: when none are left, the job is dead.
    """

    def __init__(self, delay: Optional[float] = None, message: str = "retry requested"):
        try:
            seconds = check_duration("Retry delay", delay, timedelta=True)
        except TypeError as exc:  # a ValueError, as it always was for a bad delay
            raise ValueError(str(exc)) from None
        super().__init__(message)
        self.delay = seconds


def backoff_delay(base: float, failures: int, cap: float,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before the attempt that follows failure number ``failures``."""
    if base <= 0:
        return 0.0
    # (2.0 ** 1024 would raise OverflowError; base * 2.0 ** 1023 at worst is inf, capped)
    full = min(cap, base * 2.0 ** min(max(failures - 1, 0), 1023))
    return (rng or random).uniform(full / 2, full)
