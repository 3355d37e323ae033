"""Who holds a reservation or a take: a client process, told apart from any later one.

A holder writes into each reservation and held take of a client the client's pid and
the time its process started (``/proc/<pid>/stat``, field 22, in clock ticks since
boot), so that a pid reused by another process is never taken for the first one. The
next holder of the directory keeps what live processes hold, and returns to the front
what dead ones held. Where the platform has no ``/proc``, the start time is 0 and the
pid alone stands for the process.
"""

from __future__ import annotations

import os
from typing import Optional

Holder = tuple[int, int]  # (pid, start time)


def _start_time(pid: int) -> Optional[int]:
    """Field 22 of ``/proc/<pid>/stat`` (0 without /proc); None for a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else 0
    except (OSError, IndexError):
        return 0
    if fields[0] == b"Z":  # killed, not yet reaped: gone all the same
        return None
    return int(fields[19])  # field 22, counted after the ")" that ends field 2


def identity(pid: Optional[int]) -> Optional[Holder]:
    """The holder token of process ``pid``, or None when it is unknown or gone."""
    if not pid:
        return None
    start = _start_time(pid)
    return None if start is None else (pid, start)


_me: Optional[Holder] = None


def me() -> Holder:
    """This process's token (computed again in a child after fork())."""
    global _me
    if _me is None or _me[0] != os.getpid():
        _me = identity(os.getpid()) or (os.getpid(), 0)
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
    return _start_time(pid) == start or start == 0 and _start_time(pid) is not None
