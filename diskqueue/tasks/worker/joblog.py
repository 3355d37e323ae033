"""The worker's log lines about jobs, on the ``diskqueue.worker`` logger.

One line when a job starts and one for its outcome: at INFO for a start and a success,
at WARNING for a failure that will be retried and at ERROR for a job that died, the
failure's line carrying its traceback. Each record has the job's ``job_id``, ``task``,
``queue``, ``attempt`` and (for an outcome) ``duration`` in seconds as attributes
(``extra=``), so a JSON formatter ships them as fields.

The runner calls :func:`started` and :func:`succeeded` only when INFO is enabled
(``log.isEnabledFor``): with INFO off, a job builds no dict and formats nothing here.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Protocol

from .outcome import Outcome

log = logging.getLogger("diskqueue.worker")


class Run(Protocol):
    """What a line needs of a :class:`~.runner.Run` (the runner imports this module)."""

    record: dict[str, Any]

    def took(self) -> float:
        """Seconds the call took."""


def _extra(run: Run, duration: Optional[float] = None) -> dict[str, Any]:
    rec = run.record
    extra = {"job_id": rec["id"], "task": rec["task"], "queue": rec["queue"],
             "attempt": rec.get("attempts", 0)}
    if duration is not None:
        extra["duration"] = round(duration, 6)
    return extra


def started(run: Run) -> None:
    """Log (INFO) that ``run`` started."""
    extra = _extra(run)
    log.info("job %s (%s) started: attempt %d, queue %s", extra["job_id"], extra["task"],
             extra["attempt"], extra["queue"], extra=extra)


def succeeded(run: Run) -> None:
    """Log (INFO) that ``run`` succeeded, with how long it took."""
    extra = _extra(run, run.took())
    log.info("job %s (%s) succeeded in %.3f s: attempt %d, queue %s", extra["job_id"],
             extra["task"], extra["duration"], extra["attempt"], extra["queue"], extra=extra)


def _failure(out: Outcome) -> tuple[str, Optional[BaseException]]:
    """What a failure line adds: the exception itself when it carries its traceback
    (it ran in this process), else the traceback text reported with it (a child
    process's), as a suffix of the message."""
    exc = out.exc
    if exc is not None and exc.__traceback__ is not None:
        return "", exc
    text = (out.error or {}).get("traceback") or ""
    return ("\n" + text.rstrip() if text else ""), None


def retrying(run: Run, out: Outcome, delay: float) -> None:
    """Log (WARNING, with the traceback) that ``run`` failed and will be retried."""
    extra = _extra(run, run.took())
    error = out.error or {}
    suffix, exc = _failure(out)
    log.warning("job %s (%s) failed in %.3f s: attempt %d, queue %s: %s: %s; retry in "
                "%.2f s%s", extra["job_id"], extra["task"], extra["duration"],
                extra["attempt"], extra["queue"], error.get("type"), error.get("message"),
                delay, suffix, exc_info=exc, extra=extra)


def died(run: Run, out: Outcome) -> None:
    """Log (ERROR, with the traceback) that ``run`` failed for the last time."""
    extra = _extra(run, run.took())
    error = out.error or {}
    suffix, exc = _failure(out)
    log.error("job %s (%s) is dead after %.3f s: attempt %d, queue %s: %s: %s%s",
              extra["job_id"], extra["task"], extra["duration"], extra["attempt"],
              extra["queue"], error.get("type"), error.get("message"), suffix,
              exc_info=exc, extra=extra)
