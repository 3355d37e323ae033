"""The job a task is running as: ``current_job()`` and ``set_progress()``."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, Optional

# (job id, a function that stores a progress value) while a task runs
_current: contextvars.ContextVar[Optional[tuple[str, Callable[[Any], None]]]] = (
    contextvars.ContextVar("diskqueue_current_job", default=None)
)


def current_job_id() -> Optional[str]:
    """The id of the job the calling task is running as, or None outside a task."""
    found = _current.get()
    return found[0] if found else None


def set_progress(value: Any) -> None:
    """Report progress (any msgpack value: 0.5, {"done": 10, "of": 40}...) of the running
    job; ``Job.progress`` shows it. Outside a task it raises RuntimeError."""
    found = _current.get()
    if found is None:
        raise RuntimeError("set_progress() is for a task that a worker is running")
    found[1](value)


def bind(job_id: str, report: Callable[[Any], None]) -> contextvars.Token[Any]:
    """Make ``job_id`` the current job, ``report`` storing its progress, until
    :func:`unbind` with the token returned."""
    return _current.set((job_id, report))


def unbind(token: contextvars.Token[Any]) -> None:
    """Undo the :func:`bind` that returned ``token``."""
    _current.reset(token)
