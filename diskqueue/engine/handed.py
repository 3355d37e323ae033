"""What a client process handed out, readable by the next holder after the client died.

A holder keeps a client's dequeue or pop until the client's "got it" arrives. When the
holder dies after sending the reply but before reading that word, the next holder keeps
the take for the client, which settles it at its next call. A client that dies before
that call cannot say any more whether it had the item, so each client process notes,
before it hands a take out, a note of it in a small file of its own in the directory
(``diskqueue.handed.<pid>.<start time>``), mapped into its memory: the note is one store
into the page cache, and it outlives the process, however it dies. A note is kept while
the "got it" of its take may be unread (until a reply to the next request on the same
connection), however many takes follow: the file grows when they are more than it has
room for. After that the notes are a ring, the oldest overwritten first when room is
wanted, and dropped once a holder settled them with the client after a handover. (A
reply to the client's next request says that its holder read the "got it", not that it
could write it down: on a full disk it could not.) A
holder about to put back a take it holds for a client, because the client died or did
not name it when it settled after a handover, reads the client's file first: a noted
take was handed out and is deleted; any other goes back to the front (its reply never
arrived, or was never read).

A note is ``(seq, crc32 of ns and lane, crc32 of the data)``, that crc32 carried on over
the id of the held record of a pop from the top: a Stack pushes where it popped, and an
old note must not match a later pop at the same key, even of the same bytes. The file's
blocks are allocated when it is made or grown, before a take is handed out, so a store
into the map never needs room on a full disk. A client with no room for its file or
for the notes of a take (a full disk, or no file descriptor left) hands no take out:
the take raises ``DiskQueueError`` and its items go back, as an owner's own take fails
on a full disk. One that may not make it (no permission) notes nothing: what it held
goes back as before. Either tries again at its next take. The holder deletes the
files of processes that ended (:func:`sweep`), but those of clients whose confirmations
it still has to write (a full disk).
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import Optional

from . import holders
from .api import Take
from .holders import Holder
from .permissions import file_mode

PREFIX = "diskqueue.handed."
SLOTS = 1024  # the notes a file has room for when made (it grows when they are pending)
_NOTE = struct.Struct(">QII")  # seq, crc32 of ns and lane, crc32 of data (empty: zeros)
_EMPTY = bytes(_NOTE.size)
_NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})  # a full disk, as errors say
# Errors of a read that may work a moment later: the notes are not known to be missing
_FOR_A_MOMENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EINTR,
                           errno.EAGAIN, errno.EIO})
Key = tuple[bytes, bytes, int]  # (ns, lane, seq) of a take

_log = logging.getLogger(__name__)


def note(key: Key, data: bytes, hold: int = -1) -> bytes:
    """The note of the take of ``data`` at ``key`` (``hold``: the id of the record that
    holds a pop from the top; -1 for a take from the head)."""
    ns, lane, seq = key
    digest = zlib.crc32(data)
    if hold >= 0:
        digest = zlib.crc32(hold.to_bytes(8, "big"), digest)
    return _NOTE.pack(seq, zlib.crc32(lane, zlib.crc32(len(ns).to_bytes(4, "big") + ns)),
                      digest)


def file_of(path: str, holder: Holder) -> str:
    """The file where process ``holder`` notes its takes of directory ``path``."""
    return os.path.join(path, f"{PREFIX}{holder[0]}.{holder[1]}")


def read(path: str, holder: Holder) -> Optional[frozenset[bytes]]:
    """The notes process ``holder`` left in ``path`` (none when it left no file); None
    when its file cannot be read now (no descriptor or memory left, say): what it
    handed out is unknown, and the caller asks again later rather than guess."""
    try:
        fd = os.open(file_of(path, holder), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return None if exc.errno in _FOR_A_MOMENT else frozenset()
    try:
        data = os.pread(fd, os.fstat(fd).st_size, 0)
    except OSError as exc:
        return None if exc.errno in _FOR_A_MOMENT else frozenset()
    finally:
        os.close(fd)
    size = _NOTE.size
    return frozenset(data[i:i + size] for i in range(0, len(data) - size + 1, size)) - {_EMPTY}


def forget(path: str, holder: Holder) -> None:
    """Delete the file of a process that ended (its notes were used)."""
    try:
        os.unlink(file_of(path, holder))
    except OSError:
        pass


def sweep(path: str, keep: Iterable[Holder]) -> int:
    """Delete the files of processes that ended, but those of ``keep`` (whose takes are
    still to be settled); how many."""
    kept = set(keep)
    try:
        names = os.listdir(path)
    except OSError:
        return 0
    gone = 0
    for name in names:
        if not name.startswith(PREFIX):
            continue
        try:
            pid, start = (int(part) for part in name[len(PREFIX):].split("."))
        except ValueError:
            continue
        if (pid, start) in kept or holders.alive((pid, start)):
            continue
        forget(path, (pid, start))
        gone += 1
    return gone


_ledgers: dict[str, Ledger] = {}
_ledgers_lock = threading.Lock()


def ledger(path: str) -> Ledger:
    """This process's ledger of directory ``path`` (one per process and directory, so
    that a handle opened again keeps the notes of the one before)."""
    with _ledgers_lock:
        found = _ledgers.get(path)
        if found is None:
            found = _ledgers[path] = Ledger(path)
        return found


def _after_fork_in_child() -> None:
    """A thread of the parent may have held a ledger's lock at fork(): fresh locks, and
    fresh ledgers for the child's own notes."""
    global _ledgers_lock
    _ledgers_lock = threading.Lock()
    for old in _ledgers.values():
        old._lock = threading.Lock()
    _ledgers.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Ledger:
    """This process's file of notes in one directory, made at its first note.

    A note is *pending* from the moment its take is handed out until a later reply on the
    same connection says the holder read the "got it" (:meth:`settled`), and is never
    overwritten while pending: the file grows instead, room for which is set aside
    before the take is handed out (:meth:`reserve`). Settled notes are kept as a ring,
    the oldest overwritten first, for a holder that read a "got it" and could not write
    it down. Thread-safe. After fork() a child makes one of its own (its takes are its
    own); a ledger that cannot be made notes nothing.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._map: Optional[mmap.mmap] = None
        self._pid = 0  # the process that mapped it
        self._pending: dict[Take, int] = {}  # note: slot
        self._settled: OrderedDict[Take, int] = OrderedDict()  # oldest first
        self._free: list[int] = []
        self._reserved = 0  # slots set aside for takes about to be handed out
        # why the file could not be made last time, when that may pass (a full disk,
        # no descriptor left); None otherwise
        self._not_now: Optional[str] = None

    def reserve(self, count: int) -> Optional[str]:
        """Set room aside for the notes of ``count`` takes about to be handed out (given
        back by :meth:`note` or :meth:`unreserve`); why it cannot be now (None: it is):
        the file cannot be made or grown for want of room (a full disk) or of a
        descriptor, and then the takes must not be handed out. Where it may not be made
        at all (no permission), takes go unnoted (None)."""
        with self._lock:
            mm = self._mapped()
            if mm is None:
                if self._not_now is None:  # never noted here (no permission)
                    self._reserved += count
                return self._not_now
            need = len(self._pending) + self._reserved + count
            if need > len(mm) // _NOTE.size:
                why = self._grow(need)
                if why is not None:
                    return why
            self._reserved += count
            return None

    def unreserve(self, count: int) -> None:
        """Give back room set aside for takes that were not handed out."""
        with self._lock:
            self._reserved = max(0, self._reserved - count)

    def note(self, takes: list[Take], datas: list[bytes]) -> None:
        """Note takes (and their data) being handed out, in the room set aside for them;
        pending until :meth:`settled`."""
        with self._lock:
            self._reserved = max(0, self._reserved - len(takes))
            if self._map is None or self._pid != os.getpid():
                return
            for key, data in zip(takes, datas, strict=True):
                slot = self._forget(key)
                self._pending[key] = self._slot() if slot is None else slot
                self._store(self._pending[key], note(key[:3], data, key[4]))

    def settled(self, keys: Iterable[Take]) -> None:
        """A reply after these takes said the holder read their "got it": their notes
        may be overwritten, the oldest first, once room is wanted."""
        with self._lock:
            for key in keys:
                slot = self._pending.pop(key, None)
                if slot is not None:
                    self._settled[key] = slot

    def drop(self, keys: Iterable[Take]) -> None:
        """Drop the notes of takes a holder settled with this process (deleted)."""
        with self._lock:
            if self._map is None or self._pid != os.getpid():
                return
            for key in keys:
                slot = self._forget(key)
                if slot is not None:
                    self._store(slot, _EMPTY)
                    self._free.append(slot)

    def _forget(self, key: Take) -> Optional[int]:
        """The slot of ``key``'s note, no longer counted as pending or settled."""
        slot = self._pending.pop(key, None)
        return self._settled.pop(key, None) if slot is None else slot

    def _store(self, slot: int, value: bytes) -> None:
        assert self._map is not None
        self._map[slot * _NOTE.size:(slot + 1) * _NOTE.size] = value

    def _slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._settled:
            return self._settled.popitem(last=False)[1]
        # Not set aside (every caller reserves first): grow, or as a last resort
        # overwrite the oldest pending note rather than not hand out a take already sent
        assert self._map is not None
        if self._grow(len(self._map) // _NOTE.size + 1) is None:
            return self._free.pop()
        _log.warning("%s: no room to note a take; overwrote the oldest pending note",
                     self.path)
        return self._pending.pop(next(iter(self._pending)))

    def _grow(self, need: int) -> Optional[str]:
        """Make room for ``need`` notes (at least twice as many as now); why not."""
        assert self._map is not None
        have = len(self._map) // _NOTE.size
        size = max(2 * have, need) * _NOTE.size
        name = file_of(self.path, holders.me())
        try:
            try:
                grown = _map(name, size)
            except FileNotFoundError:  # deleted under us (a tmp cleaner): made again
                grown = _make(name, self.path, size)
                grown[:len(self._map)] = self._map[:]
        except (OSError, ValueError) as exc:
            return _passing(exc) or str(exc)
        self._map.close()
        self._map = grown
        self._free.extend(range(size // _NOTE.size - 1, have - 1, -1))
        return None

    def _mapped(self) -> Optional[mmap.mmap]:
        if self._pid != os.getpid():
            # First note in this process (a child's map is its parent's file: not its own)
            self._pid, self._map = os.getpid(), None
            self._pending, self._settled, self._reserved = {}, OrderedDict(), 0
        if self._map is None:
            # Made at the first note, and tried again at each later one while it cannot
            # be made: a disk full at that moment must not leave the process without
            # notes once it has room.
            try:
                self._map = _make(file_of(self.path, holders.me()), self.path,
                                  SLOTS * _NOTE.size)
                self._not_now = None
                self._free = list(range(SLOTS - 1, -1, -1))
            except (OSError, ValueError) as exc:
                self._not_now = _passing(exc)
        return self._map


def _passing(exc: BaseException) -> Optional[str]:
    """Why a file of notes cannot be made or grown now when that may pass (a full disk,
    no descriptor left); None when it may not be made at all (no permission)."""
    code = getattr(exc, "errno", None)
    return ("the disk is full" if code in _NO_ROOM else
            os.strerror(code) if code in _FOR_A_MOMENT else None)


def _map(name: str, size: int) -> mmap.mmap:
    """The existing file of notes ``name``, grown to ``size`` bytes with its blocks,
    mapped; ``OSError`` when it cannot be grown now (its size is then unchanged but for
    blocks of zeros, which read as no notes)."""
    fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.posix_fallocate(fd, 0, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _make(name: str, path: str, size: int) -> mmap.mmap:
    """The file of notes ``name`` in directory ``path``, made with ``size`` bytes of
    blocks, mapped; ``OSError`` (and no file) when it cannot be made now (no room, no
    permission)."""
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, file_mode(os.stat(path).st_mode))  # a group's holder reads it
        os.posix_fallocate(fd, 0, size)  # the blocks now: a store never faults later
        return mmap.mmap(fd, size)
    except BaseException:
        try:
            os.unlink(name)
        except OSError:
            pass
        raise
    finally:
        os.close(fd)
