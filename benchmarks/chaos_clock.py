"""The chaos soak's clock: when the machine itself stood still.

A call that waits on a stopped holder, or on a lock nobody lets go of, is a stall of
the library; a call whose process, like every other, got no CPU for a while (a
virtual machine paused by its host, a burst of other work) is not. The soak cannot
tell the two apart from the call's duration alone, so a process of its own does
nothing but sleep 10 ms at a time and write down each time it woke late: when it, with
no work at all, did not run, nothing else could be expected to. The accounting takes
those moments out of each call's wait, as it takes out the time the call's own process
was stopped by the soak.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable

TICK = 0.01
LATE = 0.02  # a wake this late (beyond the tick) is counted; the scheduler's own slack is far less

Span = tuple[float, float]  # time.time() from, to


def tick(path: str) -> None:
    """Sleep a tick at a time until killed, and append each late wake to ``path``:
    one line "from to", in seconds since the epoch."""
    with open(path, "a", buffering=1) as out:
        while True:
            before = time.monotonic()
            time.sleep(TICK)
            late = time.monotonic() - before - TICK
            if late > LATE:
                now = time.time()
                out.write(f"{now - late:.6f} {now:.6f}\n")


def read(path: str) -> list[Span]:
    """The late wakes a clock wrote, in order (none when it wrote none)."""
    try:
        with open(path) as fh:
            spans = [tuple(map(float, line.split())) for line in fh if line.count(" ") == 1]
    except FileNotFoundError:
        return []
    return sorted((a, b) for a, b in spans)


def overlap(start: float, end: float, *spans: Iterable[Span]) -> float:
    """Seconds of [start, end] covered by any of ``spans`` (each an iterable of spans;
    where they overlap, the time is counted once)."""
    cut = sorted((max(a, start), min(b, end)) for group in spans for a, b in group
                 if b > start and a < end)
    total, reach = 0.0, start
    for a, b in cut:
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


class Standstills:
    """The clock's spans, looked up by time."""

    def __init__(self, spans: list[Span]) -> None:
        self.spans = spans
        self.starts = [a for a, _ in spans]
        self.longest = max((b - a for a, b in spans), default=0.0)
        self.total = sum(b - a for a, b in spans)

    def within(self, start: float, end: float) -> list[Span]:
        """The spans that may overlap [start, end]."""
        first = bisect.bisect_left(self.starts, start - self.longest)
        last = bisect.bisect_right(self.starts, end)
        return self.spans[first:last]
