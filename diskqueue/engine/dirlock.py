"""The lock a process holds on a directory for as long as it owns it.

It is an fcntl lock on :data:`LOCK_FILE`. LevelDB's own LOCK is let go whenever LevelDB
is closed, which a recovery from a failed write does, and a process that took the
directory in that moment changed what the owner still holds in memory; every opener
takes this one first. An fcntl lock belongs to the process, and closing any descriptor
of the file lets it go: a second open of it here (a repair of a directory this process
owns) must not happen, so this process's locks are kept in one table.

A signal handler's exception (Ctrl-C, a SIGTERM handler's ``SystemExit``) can end
taking or letting go at any step. An entry leaves the table only once its descriptor
is closed, and letting go checks what is left to do, so doing it again finishes it; a
descriptor is recorded before it is locked, so no lock is held by a descriptor nobody
knows. An entry whose owner (the store or repair that took it) is gone without letting
go is let go by the next take of its directory in this process.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import weakref
from contextlib import suppress

from ..errors import DiskQueueError, Locked
from . import permissions

LOCK_FILE = "diskqueue.lock"
PID_FILE = "diskqueue.pid"  # written by the owner once it holds the lock

_held: dict[tuple[int, int], DirLock] = {}  # directory (device, inode) -> its lock
_table = threading.Lock()


class DirLock:
    """This process's lock on one directory; see :func:`take`."""

    def __init__(self, path: str, key: tuple[int, int], fd: int, owner: object) -> None:
        self.path = path
        self._key = key
        self._fd = fd
        st = os.fstat(fd)
        self._file = (st.st_dev, st.st_ino)
        self._owner = weakref.ref(owner)
        self._locked = False

    @property
    def released(self) -> bool:
        """Whether :meth:`let_go` is done."""
        return _held.get(self._key) is not self

    def let_go(self) -> None:
        """Remove the owner's pid file, then let go of the directory. While the lock is
        held no other process can have written the pid file, so the one removed is
        ours; after the lock is let go, a successor may write its own at once."""
        with _table:
            self._let_go()

    def _let_go(self) -> None:
        if _held.get(self._key) is not self:
            return
        if self._open():  # else a let go that an exception ended closed it already
            if self._locked:
                with suppress(OSError):
                    os.unlink(os.path.join(self.path, PID_FILE))
            os.close(self._fd)  # closing it lets go of the lock
        del _held[self._key]

    def _open(self) -> bool:
        """Whether the descriptor is still open on the lock file (not closed, nor
        reused for another file since)."""
        try:
            st = os.fstat(self._fd)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._file

    def _in_use(self) -> bool:
        return self._owner() is not None and self._open()


def take(path: str, owner: object) -> DirLock:
    """Lock ``path``'s :data:`LOCK_FILE` for ``owner`` (held until it lets go, or is
    gone), or raise ``Locked`` when another process, or another owner here, holds it."""
    name = os.path.join(path, LOCK_FILE)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    with _table:
        try:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino)
            left = _held.get(key)
            if left is not None:
                if left._in_use():
                    raise Locked(path, os.getpid(), " (this process)")
                left._let_go()  # an open or close that an exception ended left it
            fd = os.open(name, flags, permissions.file_mode(st.st_mode))
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise permissions.denied(path, f"cannot open {LOCK_FILE}: {exc.strerror}") from exc
            raise DiskQueueError(f"{path}: cannot open {LOCK_FILE}: {exc.strerror}") from exc
        lock = _held[key] = DirLock(path, key, fd, owner)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock._let_go()
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise Locked(path, read_pid(path)) from exc
            raise DiskQueueError(f"{path}: cannot lock {LOCK_FILE}: {exc.strerror}") from exc
        lock._locked = True
        return lock


def read_pid(path: str) -> int | None:
    """The pid the holder of ``path`` wrote, or None (no holder, or an unreadable file)."""
    text = permissions.read_file(path, PID_FILE)
    try:
        return int((text or "").strip() or 0) or None
    except ValueError:
        return None


def _after_fork_in_child() -> None:
    global _table
    _held.clear()  # fcntl locks are not inherited
    _table = threading.Lock()  # a thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)
