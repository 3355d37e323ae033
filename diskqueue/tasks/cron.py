"""A five-field cron expression: ``minute hour day-of-month month day-of-week``.

Each field takes ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, and lists
``a,b``; months and weekdays also take names (``jan``, ``mon``); weekday 0 and 7 are
Sunday. As in Vixie cron, when both day fields are restricted a day matching either one
matches. ``@hourly``, ``@daily``, ``@weekly``, ``@monthly`` and ``@yearly`` are shortcuts.
Times are local time.
"""

from __future__ import annotations

import datetime as dt

_MACROS = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {n: i for i, n in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DAYS = {n: i for i, n in enumerate("sun mon tue wed thu fri sat".split())}
# (name, lowest, highest, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS),
)


def _value(text: str, low: int, high: int, names: dict[str, int], what: str) -> int:
    number = names.get(text.lower()) if names else None
    if number is None:
        if not text.isdigit():
            raise ValueError(f"cron {what}: {text!r} is not a number")
        number = int(text)
    if not low <= number <= high:
        raise ValueError(f"cron {what}: {number} is outside {low}-{high}")
    return number


def _field(text: str, low: int, high: int, names: dict[str, int], what: str) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"cron {what}: bad step in {part!r}")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, b = body.split("-", 1)
            first = _value(a, low, high, names, what)
            last = _value(b, low, high, names, what)
            if first > last:
                raise ValueError(f"cron {what}: range {part!r} runs backwards")
        else:
            first = _value(body, low, high, names, what)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


class Cron:
    """A parsed cron expression; :meth:`next_after` gives the next matching minute."""

    def __init__(self, expression: str) -> None:
        if not isinstance(expression, str):
            raise TypeError(f"cron must be a str, not {type(expression).__name__}")
        self.expression = expression
        text = _MACROS.get(expression.strip().lower(), expression)
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(f"cron {expression!r} must have 5 fields: "
                             "minute hour day-of-month month day-of-week")
        sets = [_field(p, lo, hi, names, what)
                for p, (what, lo, hi, names) in zip(parts, _FIELDS, strict=True)]
        self.minutes, self.hours, self.days, self.months, weekdays = sets
        self.weekdays = {d % 7 for d in weekdays}
        self.any_day = parts[2] == "*"
        self.any_weekday = parts[4] == "*"
        if self._next(dt.datetime(2000, 1, 1), limit=60_000) is None:
            raise ValueError(f"cron {expression!r} never matches")

    def _day_ok(self, day: dt.datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def _next(self, start: dt.datetime, limit: int = 60_000) -> dt.datetime | None:
        d = start
        for _ in range(limit):
            if d.month not in self.months:
                d = (d.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
            elif not self._day_ok(d):
                d = d.replace(hour=0, minute=0) + dt.timedelta(days=1)
            elif d.hour not in self.hours:
                d = d.replace(minute=0) + dt.timedelta(hours=1)
            elif d.minute not in self.minutes:
                d += dt.timedelta(minutes=1)
            else:
                return d
        return None

    def next_after(self, t: float) -> float:
        """The first matching minute strictly after epoch time ``t`` (local time)."""
        start = dt.datetime.fromtimestamp(t).replace(second=0, microsecond=0)
        found = self._next(start + dt.timedelta(minutes=1))
        if found is None:  # pragma: no cover - ruled out when parsing
            raise ValueError(f"cron {self.expression!r} never matches")
        return found.timestamp()

    def __repr__(self) -> str:
        """``Cron('expression')``."""
        return f"Cron({self.expression!r})"
