"""Who holds a reservation or a take: a client process, told apart from any later one.

A holder writes into each reservation and held take of a client the client's pid and
the time its process started (``/proc/<pid>/stat``, field 22, in clock ticks since
boot), so that a pid reused by another process is never taken for the first one. The
next holder of the directory keeps what live processes hold, and returns to the front
what dead ones held. Where the platform has no ``/proc``, the start time is 0 and the
pid alone stands for the process. A start time that cannot be read for a moment (the
process is out of file descriptors, say) counts as alive: keeping what a dead process
held a little longer costs a wait, returning what a live one holds gives it out twice.
"""

from __future__ import annotations

import os
from typing import Optional

Holder = tuple[int, int]  # (pid, start time)
_UNREAD = -1  # a start time that could not be read now


def _start_time(pid: int) -> Optional[int]:
    """Field 22 of ``/proc/<pid>/stat`` (0 without /proc); None for a zombie or no
    such process; ``_UNREAD`` when it cannot be read now (no descriptor left, say)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None if os.path.isdir("/proc/self") else 0
    except (OSError, IndexError):
        return _UNREAD
    if fields[0] == b"Z":  # killed, not yet reaped: gone all the same
        return None
    return int(fields[19])  # field 22, counted after the ")" that ends field 2


def identity(pid: Optional[int]) -> Optional[Holder]:
    """The holder token of process ``pid``, or None when it is unknown or gone."""
    if not pid:
        return None
    start = _start_time(pid)
    if start == _UNREAD:
        return (pid, 0)  # the pid alone stands for it, as where there is no /proc
    return None if start is None else (pid, start)


_me: Optional[Holder] = None


def me() -> Holder:
    """This process's token (computed again in a child after fork())."""
    global _me
    if _me is None or _me[0] != os.getpid():
        start = _start_time(os.getpid())
        if start == _UNREAD:  # not kept: a holder reading it later would read another
            return (os.getpid(), 0)
        _me = (os.getpid(), start or 0)
    return _me


def _exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie among them)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    return True


def running(pid: int) -> bool:
    """Whether process ``pid`` runs: it exists and is not a zombie (killed, not yet
    reaped). Without ``/proc``, a process that exists counts as running."""
    return _exists(pid) and _start_time(pid) is not None


def alive(holder: Holder) -> bool:
    """Whether the process ``holder`` names still runs (the same one, not a reuse)."""
    pid, start = holder
    if not _exists(pid):
        return False
    now = _start_time(pid)
    return now == start or now == _UNREAD or start == 0 and now is not None
