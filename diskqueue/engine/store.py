"""The one module that talks to LevelDB.

It opens a directory (under the lock of :mod:`.dirlock`), writes atomic batches, reads
and iterates, compacts, repairs, and translates every plyvel error into a diskqueue
error. Nothing else in the package imports plyvel.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from operator import itemgetter
from typing import Any

try:
    import plyvel
except ImportError:  # Python 3.12+: the maintained fork takes plyvel's place.
    import plyvel_next as plyvel  # type: ignore[no-redef]

from ..errors import Corrupted, DiskQueueError, Locked
from . import logs, permissions
from .conditions import Condition, new_lock
from .dirlock import PID_FILE, read_pid, take

log = logging.getLogger("diskqueue.store")

_drain: Any = deque(maxlen=0).extend  # runs an iterator of calls to its end, in C
_WRITE_BUFFER = 4 * 1024 * 1024
# A batch with fewer bytes of values than this reuses one WriteBatch (creating one costs
# as much as a small write). Its buffer keeps the size of the biggest batch it held,
# so big batches get a fresh one.
_REUSE_BELOW = 1024 * 1024
_value = itemgetter(1)
# A key range holding no key: compacting it only makes LevelDB flush its memtable and
# open a new log (see Store._switch_log).
_NOWHERE = b"\xff" * 16
# The process that used LevelDB first. LevelDB runs its flushes and compactions in one
# background thread per process, started at first need; fork() copies no thread, and
# LevelDB in the child still thinks it runs, so a database the child opened would never
# flush: its writes stop once the write buffer is full, and its close() waits for ever.
_leveldb_pid: int | None = None
# Set in a child forked while that thread may have run: the pid of the process forked.
_forked_from: int | None = None
_forking: int | None = None
_FULLFSYNC: int | None = getattr(fcntl, "F_FULLFSYNC", None)
_datasync = getattr(os, "fdatasync", os.fsync)


def can_own() -> bool:
    """Whether this process may open LevelDB: not a child forked while LevelDB's
    background thread may have run in its parent (see ``_leveldb_pid``)."""
    return _forked_from is None


def forked_note() -> str:
    """The end of a ``Locked`` message in a child that cannot own a directory."""
    return (f", and this process cannot take it over: it was forked from process "
            f"{_forked_from} after LevelDB ran there, and LevelDB's background thread "
            "does not survive fork(). Open queues in it only as a client of another "
            "process (or fork before using any queue, or use the 'spawn' start method)")


def _threads_python_did_not_start() -> bool:
    """Whether this process runs a thread that Python did not start (LevelDB's, once it
    started it); True where the threads cannot be listed."""
    try:
        tasks = {int(name) for name in os.listdir(f"/proc/{os.getpid()}/task")}
    except (OSError, ValueError):
        return True
    return bool(tasks - {t.native_id for t in threading.enumerate()})


def _before_fork() -> None:
    global _forking
    risky = _leveldb_pid == os.getpid() and _threads_python_did_not_start()
    _forking = os.getpid() if risky or _forked_from is not None else None


def _after_fork_in_child() -> None:
    global _forked_from
    if _forking is not None and _forked_from is None:
        _forked_from = _forking


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


class Store:
    """A LevelDB database in one directory, owned by this process.

    Callers serialize every call (the engine's lock) except :meth:`sync` and
    :meth:`compact`, which may run beside the others.

    A write that fails (a full disk, say) may leave part of its record at the end of
    LevelDB's log, and LevelDB appends the next records behind it, where its recovery
    cannot read them: every later write would be lost on the next open. So after a
    failed write the store moves LevelDB to a fresh log before anything else is
    written (:meth:`_recover`), and until that succeeds every call is refused. The
    store is marked as needing that recovery before it begins, so a recovery that a
    signal handler's exception ends is done again before the next call (see
    :meth:`interrupted`).

    Every method raises LevelDB's errors as ``diskqueue`` ones: ``Corrupted`` for
    damaged files, ``PermissionDenied`` for a directory it may not write,
    ``DiskQueueError`` otherwise (saying so when the disk is full); opening raises
    ``Locked`` when another process holds the directory.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        permissions.prepare_directory(path, warn=False)  # a handle checked its mode=
        permissions.check_entries(path)
        self.pid = os.getpid()
        if not can_own():
            raise Locked(path, read_pid(path), forked_note())
        # Small batches reuse the write batch: callers serialize writes (the engine's
        # lock). sync and compact run beside other calls; a recovery waits until none
        # runs. The gate is entered by the lock's own C code (``with self._gate_lock``),
        # not the condition's Python one: a signal handler's exception raised as that
        # began could leave it held.
        self._gate_lock = new_lock()
        self._gate = Condition(self._gate_lock)
        self._beside = 0
        self._recovering = False
        # Set while calls must recover first: why the last recovery failed, or that one
        # has not finished.
        self._broken: DiskQueueError | None = None
        self._synced_logs: set[str] = set()  # sealed log files known to be on disk
        self._current_log = ""  # the newest log when the last sync ran
        self._log_fd: int | None = None  # open on it, for its fsyncs
        self._lock = take(path, self)
        # From here on, whatever ends the open (a signal handler's exception too) lets go
        # of the directory: else this process would hold it until it exits (or opens it
        # again, when the lock's owner is gone; see dirlock).
        try:
            # Named now, before LevelDB's recovery, which may take a while: until then
            # the file would name the previous owner (maybe dead), or no one.
            self._write_pid()
            self._db = self._open()
            try:
                permissions.set_file_modes(path)
                self._wb = self._db.write_batch()
            except BaseException:
                self._db.close()
                raise
        except BaseException:
            self._lock.let_go()
            raise

    def _open(self) -> Any:
        global _leveldb_pid
        _leveldb_pid = self.pid
        try:
            return plyvel.DB(
                self.path,
                create_if_missing=True,
                paranoid_checks=True,
                write_buffer_size=_WRITE_BUFFER,
                # Queue items are written once and soon deleted. Compressing every flush
                # and compaction of them kept LevelDB's single background thread so busy
                # under a steady stream that compactions of consumed ranges fell behind
                # and the directory grew (30 MB instead of 5 in benchmarks/run.py, disk).
                compression=None,
            )
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    def _write_pid(self) -> None:
        try:
            permissions.write_file(self.path, PID_FILE, str(self.pid))
        except OSError as exc:
            log.warning("could not record the owner pid in %s: %s", self.path, exc)

    # -- translation -----------------------------------------------------------
    def _translate(self, exc: BaseException) -> DiskQueueError:
        text = exc.args[0] if exc.args else str(exc)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        text = str(text)
        if "lock" in text and ("already held" in text or "unavailable" in text):
            pid = read_pid(self.path)
            if pid == os.getpid():
                # The pid file is ours (written when diskqueue.lock was taken): it is
                # LevelDB in this process that still holds its lock, for the process
                # this one was forked from.
                return Locked(self.path, None, ", whose LevelDB lock this process "
                              "inherited across fork(): it cannot take the directory over")
            return Locked(self.path, pid)
        if "Permission denied" in text or "Read-only file system" in text:
            return permissions.denied(self.path, text)
        if "No space left" in text or "File too large" in text or "Disk quota" in text:
            return DiskQueueError(
                f"{self.path}: the disk is full ({text}); nothing was written. "
                "Free some space and try again"
            )
        if isinstance(exc, plyvel.CorruptionError) or "orrupt" in text or _damaged_file(text):
            return Corrupted(self.path, text)
        return DiskQueueError(f"{self.path}: LevelDB error: {text}")

    # -- recovery after a failed write ---------------------------------------------
    def _failed(self, exc: BaseException) -> DiskQueueError:
        """The error for a failed write, after bringing LevelDB back to a fresh log."""
        error = self._translate(exc)
        try:
            self._recover()
        except DiskQueueError as again:
            logs.later(log, logging.ERROR, "%s: writes are refused until LevelDB can reopen: %s",
                       self.path, again)
        return error

    def _recover(self) -> None:
        """Move LevelDB to a fresh log, leaving the damaged one behind with its partial
        record at its end, where recovery ignores it; reopen when that is not enough.

        Runs with the caller's lock held, once no sync or compaction runs beside it.
        Raises (and stays broken, so the next call tries again) when LevelDB cannot be
        reopened, for instance while the disk is still full. Calls stay refused until it
        ends well: one that an exception ends at any step is begun again by the next.
        """
        self._owe_recovery()
        with self._gate_lock:
            self._recovering = True
            while self._beside:
                self._gate.wait()
        try:
            if self._db.closed or not self._switch_log():
                self._reopen()
            self._wb = self._db.write_batch()  # (the one before may be the closed DB's)
            permissions.set_file_modes(self.path)
            self._broken = None
        finally:
            with self._gate_lock:
                self._recovering = False
                self._gate.notify_all()

    def interrupted(self, exc: BaseException) -> None:
        """Told by the engine that ``exc`` (a signal handler's) ended a call: if it was
        raised while a failed write was being handled, the recovery may not have begun,
        and the next call must run it."""
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, plyvel.Error):
                self._owe_recovery()
                return
            seen = seen.__context__

    def _owe_recovery(self) -> None:
        """Have every call recover first, until a recovery ends well."""
        if self._broken is None:
            self._broken = DiskQueueError(f"{self.path}: a recovery from a failed write "
                                          "has not finished")

    def _switch_log(self) -> bool:
        """Ask LevelDB for a new log (a compaction starts by flushing the memtable to a
        table and opening one); True when a new log exists and a write into it works."""
        before = _newest_log(self.path)
        try:
            self._db.compact_range(start=_NOWHERE, stop=_NOWHERE)
            if _newest_log(self.path) <= before:
                return False  # the new log could not be created: still on the damaged one
            # An error recorded by LevelDB (a failed flush) fails every write from here.
            self._db.write_batch().write()
        except plyvel.Error:
            return False
        return True

    def _reopen(self) -> None:
        """Close and reopen LevelDB: its recovery drops a partial record at the end of a
        log and starts a fresh one. The in-memory state of callers stays valid, since
        a failed write was never applied to it."""
        if not self._db.closed:
            self._db.close()
        try:
            self._db = self._open()
        except DiskQueueError as exc:
            self._broken = exc  # says what is wrong (the disk is still full, say)
            raise

    def _usable(self) -> None:
        """Refuse a call while a failed write has not been recovered from (retrying it)."""
        if self._broken is not None:
            self._recover()

    # -- reads -----------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, or None; raises ``DiskQueueError``/``Corrupted`` as
        LevelDB fails."""
        if self._broken is not None:
            self._usable()
        try:
            return self._db.get(key)
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    def scan(
        self,
        *,
        prefix: bytes | None = None,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
        max_bytes: int | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """Return up to ``limit`` ``(key, value)`` pairs of a range, read at once; with
        ``max_bytes``, end once the values read reach it (big values are never held by
        the run)."""
        if self._broken is not None:
            self._usable()
        try:
            it = self._db.iterator(prefix=prefix, start=start, stop=stop, reverse=reverse)
            try:
                if max_bytes is None:
                    return list(it if limit is None else islice(it, limit))
                out: list[tuple[bytes, bytes]] = []
                size = 0
                for pair in it:
                    out.append(pair)
                    size += len(pair[1])
                    if size >= max_bytes or len(out) == limit:
                        break
                return out
            finally:
                it.close()
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` pairs under a prefix; only for start-up and repair."""
        if self._broken is not None:
            self._usable()
        try:
            with self._db.iterator(prefix=prefix) as it:
                yield from it
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    # -- writes ----------------------------------------------------------------
    def put(self, key: bytes, value: bytes) -> None:
        """Write one key; raises ``DiskQueueError`` when the write fails."""
        if self._broken is not None:
            self._usable()
        try:
            self._db.put(key, value)
        except plyvel.Error as exc:
            raise self._failed(exc) from exc

    def write(self, puts: Any = (), deletes: Any = (), sync: bool = False,
              taken: Any = ()) -> None:
        """Write puts and deletes as one atomic batch: all of it lands, or none.
        ``taken`` holds runs of ``(key, value)`` pairs just read, whose keys go too."""
        if self._broken is not None:
            self._usable()
        try:
            if (sync or len(deletes) > 1024 or len(puts) > 8 or len(taken) > 8
                    or (puts and sum(map(len, map(_value, puts))) >= _REUSE_BELOW)):
                wb = self._db.write_batch(sync=sync)
            else:
                wb = self._reused()
            delete, put = wb.delete, wb.put
            for key in deletes:  # a plain loop calls plyvel faster than map() does
                delete(key)
            for pairs in taken:
                for key, _ in pairs:
                    delete(key)
            for key, value in puts:
                put(key, value)
            wb.write()
        except plyvel.Error as exc:
            raise self._failed(exc) from exc

    def write_run(self, item_keys: list[bytes], datas: list[bytes], pointer_key: bytes,
                  pointer: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Items of one lane with the pointer they move (and ``extra`` puts), as one
        batch."""
        if self._broken is not None:
            self._usable()
        try:
            if sum(map(len, datas)) < _REUSE_BELOW:
                wb = self._reused()
            else:
                wb = self._db.write_batch()
            _drain(map(wb.put, item_keys, datas))
            wb.put(pointer_key, pointer)
            for key, value in extra:
                wb.put(key, value)
            wb.write()
        except plyvel.Error as exc:
            raise self._failed(exc) from exc

    def _reused(self) -> Any:
        wb = self._wb
        wb.clear()
        return wb

    def write2(self, k1: bytes, v1: bytes, k2: bytes, v2: bytes,
               third: tuple[bytes, bytes] | None = None) -> None:
        """Two puts (and ``third``) as one batch: the hot path of a single enqueue (item
        and pointer, and a client's receipt or a job's record)."""
        if self._broken is not None:
            self._usable()
        try:
            if len(v1) + (0 if third is None else len(third[1])) < _REUSE_BELOW:
                wb = self._wb
                wb.clear()
            else:
                wb = self._db.write_batch()
            wb.put(k1, v1)
            wb.put(k2, v2)
            if third is not None:
                wb.put(*third)
            wb.write()
        except plyvel.Error as exc:
            raise self._failed(exc) from exc

    def pop(self, key: bytes, pointer_key: bytes, pointer: bytes) -> bytes | None:
        """Read a key, then delete it and write a pointer in one batch: a single dequeue."""
        if self._broken is not None:
            self._usable()
        try:
            data = self._db.get(key)
            if data is not None:
                wb = self._wb
                wb.clear()
                wb.delete(key)
                wb.put(pointer_key, pointer)
                wb.write()
            return data
        except plyvel.Error as exc:
            raise self._failed(exc) from exc

    def delete_put(self, key: bytes, pointer_key: bytes, pointer: bytes) -> None:
        """Delete a key and write a pointer in one batch: a dequeue of an item read before."""
        if self._broken is not None:
            self._usable()
        try:
            wb = self._wb
            wb.clear()
            wb.delete(key)
            wb.put(pointer_key, pointer)
            wb.write()
        except plyvel.Error as exc:
            raise self._failed(exc) from exc

    def sync(self) -> None:
        """Make every write that returned before this call survive power loss.

        This fsyncs LevelDB's log files itself rather than making an empty sync write.
        LevelDB switches to a new log when its write buffer fills (an empty write may be
        the one that switches) and closes the old log without an fsync: a sync write
        then fsyncs only the new log, and writes in the old one wait for a background
        flush. So the current log and every older log not yet known to be on disk are
        fsynced here; a log already deleted was flushed into a table, which LevelDB
        fsyncs before it deletes the log. Nothing is written, so a full disk cannot
        make this leave part of a record behind, and writers go on beside the fsync.
        Callers run one at a time (the engine's group commit).
        """
        logs = _log_files(self.path)
        try:
            for name in logs[:-1]:
                if name not in self._synced_logs:
                    _sync_path(os.path.join(self.path, name))
                    self._synced_logs.add(name)
            if logs and logs[-1] != self._current_log:
                self._close_log()
                try:
                    self._log_fd = os.open(os.path.join(self.path, logs[-1]),
                                           os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except FileNotFoundError:  # replaced meanwhile: its records are in a table
                    pass
                else:
                    self._current_log = logs[-1]
                    # A new log's name must survive too: LevelDB only fsyncs its
                    # directory for a new MANIFEST, and recovery lists the directory.
                    _sync_path(self.path, os.fsync)
            if self._log_fd is not None and logs and logs[-1] == self._current_log:
                _sync_fd(self._log_fd)  # kept open: one fsync per call, as LevelDB's
        except OSError as exc:
            raise DiskQueueError(
                f"{self.path}: fsync failed ({exc.strerror}); the last writes may not be "
                "on disk"
            ) from exc
        self._synced_logs.intersection_update(logs)

    def _close_log(self) -> None:
        fd, self._log_fd = self._log_fd, None  # never closed twice (an exception between)
        if fd is not None:
            self._current_log = ""
            os.close(fd)

    def compact(self, start: bytes | None, stop: bytes | None) -> None:
        """Compact a key range; may run beside other calls (a background thread)."""
        with self._gate_lock:
            while self._recovering:
                self._gate.wait()
            if self._broken is not None:
                return  # the next locked call reopens LevelDB; compaction can wait
            self._beside += 1
        try:
            self._db.compact_range(start=start, stop=stop)
        except plyvel.Error as exc:
            raise self._translate(exc) from exc
        finally:
            with self._gate_lock:
                self._beside -= 1
                self._gate.notify_all()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` let go of the directory (LevelDB is closed by then)."""
        return self._lock.released

    def close(self) -> None:
        """Close LevelDB and let go of the directory (the pid file and the lock).
        Idempotent: a close that a signal handler's exception ended is finished so."""
        if self.closed:
            return
        try:
            self._db.close()
            self._close_log()
            permissions.set_file_modes(self.path)  # what LevelDB created since the open
        finally:
            self._lock.let_go()


def _log_files(path: str) -> list[str]:
    """LevelDB's write-ahead logs in a directory, oldest first (the last is current)."""
    try:
        names = [n for n in os.listdir(path) if n.endswith(".log") and n[:-4].isdigit()]
    except OSError:
        return []
    return sorted(names, key=lambda n: int(n[:-4]))


def _newest_log(path: str) -> int:
    logs = _log_files(path)
    return int(logs[-1][:-4]) if logs else -1


def _sync_path(path: str, sync: Callable[[int], None] | None = None) -> None:
    """Fsync one file (or, with ``os.fsync``, a directory) by name; a file already gone
    needs none."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return
    try:
        (sync or _sync_fd)(fd)
    finally:
        os.close(fd)


def _sync_fd(fd: int) -> None:
    """What LevelDB does for its sync writes: F_FULLFSYNC on macOS (fsync leaves the data
    in the drive's cache there), fdatasync where it exists, fsync elsewhere."""
    if _FULLFSYNC is not None:
        try:
            fcntl.fcntl(fd, _FULLFSYNC)
            return
        except OSError:
            pass
    _datasync(fd)


def _damaged_file(text: str) -> bool:
    """An IO error reading one of LevelDB's own files means the file is damaged
    (truncated, say): repair can salvage the rest."""
    return text.startswith("IO error") and any(
        part in text for part in (".ldb", ".sst", ".log", "MANIFEST", "CURRENT")
    )


class _Repairing:
    """The owner of the lock a repair takes (see dirlock.take)."""


def repair(path: str) -> None:
    """Run LevelDB's repair on a directory; it salvages what the files still hold."""
    if not os.path.isdir(path):
        raise DiskQueueError(f"{path} is not a directory")
    if not os.path.exists(os.path.join(path, "CURRENT")) and not any(
        name.endswith((".ldb", ".sst", ".log")) for name in os.listdir(path)
    ):
        raise DiskQueueError(f"{path} holds no LevelDB database to repair")
    owner = _Repairing()
    lock = take(path, owner)  # an owner may hold it while LevelDB's LOCK is let go
    try:
        plyvel.repair_db(path, paranoid_checks=True)
    except plyvel.Error as exc:
        text = exc.args[0] if exc.args else exc
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if "lock" in str(text) and "Permission denied" not in str(text):
            raise Locked(path, read_pid(path)) from exc
        if "Permission denied" in str(text) or "Read-only file system" in str(text):
            raise permissions.denied(path, str(text)) from exc
        raise DiskQueueError(f"repair of {path} failed: {text}") from exc
    finally:
        lock.let_go()

