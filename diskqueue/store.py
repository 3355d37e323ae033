"""The one module that talks to LevelDB.

It opens and locks a directory, writes atomic batches, reads and iterates, compacts,
repairs, and translates every plyvel error into a diskqueue error. Nothing else in the
package imports plyvel.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from itertools import islice
from operator import itemgetter
from typing import Any

try:
    import plyvel
except ImportError:  # Python 3.13+: the maintained fork takes plyvel's place.
    import plyvel_next as plyvel  # type: ignore[no-redef]

from .errors import Corrupted, DiskQueueError, Locked

log = logging.getLogger("diskqueue.store")

PID_FILE = "diskqueue.pid"
_drain: Any = deque(maxlen=0).extend  # runs an iterator of calls to its end, in C
_WRITE_BUFFER = 4 * 1024 * 1024
# A batch with fewer bytes of values than this reuses one WriteBatch (creating one costs
# as much as a small write). Its buffer keeps the size of the biggest batch it held,
# so big batches get a fresh one.
_REUSE_BELOW = 1024 * 1024
_value = itemgetter(1)


def _check_directory(path: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise DiskQueueError(f"{path} exists and is not a directory; pick another path")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise DiskQueueError(f"cannot create directory {path}: {exc.strerror}") from exc


def read_pid(path: str) -> int | None:
    try:
        with open(os.path.join(path, PID_FILE)) as fh:
            return int(fh.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


class Store:
    """A LevelDB database in one directory, owned by this process."""

    def __init__(self, path: str) -> None:
        self.path = path
        _check_directory(path)
        try:
            self._db = plyvel.DB(
                path,
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
        self.pid = os.getpid()
        # Small batches reuse this one: callers serialize writes (the engine's lock).
        self._wb = self._db.write_batch()
        self._write_pid()

    def _write_pid(self) -> None:
        tmp = os.path.join(self.path, PID_FILE + ".tmp")
        try:
            with open(tmp, "w") as fh:
                fh.write(str(self.pid))
            os.replace(tmp, os.path.join(self.path, PID_FILE))
        except OSError:
            log.warning("could not record the owner pid in %s", self.path)

    # -- translation -----------------------------------------------------------
    def _translate(self, exc: BaseException) -> DiskQueueError:
        text = exc.args[0] if exc.args else str(exc)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        text = str(text)
        if "lock" in text and ("already held" in text or "unavailable" in text):
            return Locked(self.path, read_pid(self.path))
        if "No space left" in text or "File too large" in text or "Disk quota" in text:
            return DiskQueueError(
                f"{self.path}: the disk is full ({text}); nothing was written. "
                "Free some space, then close and reopen the queue"
            )
        if isinstance(exc, plyvel.CorruptionError) or "orrupt" in text or _damaged_file(text):
            return Corrupted(self.path, text)
        return DiskQueueError(f"{self.path}: LevelDB error: {text}")

    # -- reads -----------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
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
        try:
            with self._db.iterator(prefix=prefix) as it:
                yield from it
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    # -- writes ----------------------------------------------------------------
    def put(self, key: bytes, value: bytes) -> None:
        try:
            self._db.put(key, value)
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    def write(self, puts: Any = (), deletes: Any = (), sync: bool = False,
              taken: Any = ()) -> None:
        """Write puts and deletes as one atomic batch: all of it lands, or none.
        ``taken`` holds runs of ``(key, value)`` pairs just read, whose keys go too."""
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
            raise self._translate(exc) from exc

    def write_run(self, item_keys: list[bytes], datas: list[bytes], pointer_key: bytes,
                  pointer: bytes) -> None:
        """Items of one lane with the pointer they move, as one batch."""
        try:
            if sum(map(len, datas)) < _REUSE_BELOW:
                wb = self._reused()
            else:
                wb = self._db.write_batch()
            _drain(map(wb.put, item_keys, datas))
            wb.put(pointer_key, pointer)
            wb.write()
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    def _reused(self) -> Any:
        wb = self._wb
        wb.clear()
        return wb

    def write2(self, k1: bytes, v1: bytes, k2: bytes, v2: bytes) -> None:
        """Two puts as one batch: the hot path of a single enqueue (item and pointer)."""
        try:
            if len(v1) < _REUSE_BELOW:
                wb = self._wb
                wb.clear()
            else:
                wb = self._db.write_batch()
            wb.put(k1, v1)
            wb.put(k2, v2)
            wb.write()
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    def pop(self, key: bytes, pointer_key: bytes, pointer: bytes) -> bytes | None:
        """Read a key, then delete it and write a pointer in one batch: a single dequeue."""
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
            raise self._translate(exc) from exc

    def delete_put(self, key: bytes, pointer_key: bytes, pointer: bytes) -> None:
        """Delete a key and write a pointer in one batch: a dequeue of an item read before."""
        try:
            wb = self._wb
            wb.clear()
            wb.delete(key)
            wb.put(pointer_key, pointer)
            wb.write()
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    def sync(self) -> None:
        """Fsync the log up to here. Concurrent callers share one fsync in LevelDB."""
        try:
            self._db.write_batch(sync=True).write()
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    def compact(self, start: bytes | None, stop: bytes | None) -> None:
        try:
            self._db.compact_range(start=start, stop=stop)
        except plyvel.Error as exc:
            raise self._translate(exc) from exc

    def close(self) -> None:
        self._db.close()
        try:
            if read_pid(self.path) == self.pid:
                os.unlink(os.path.join(self.path, PID_FILE))
        except OSError:
            pass


def _damaged_file(text: str) -> bool:
    """An IO error reading one of LevelDB's own files means the file is damaged
    (truncated, say): repair can salvage the rest."""
    return text.startswith("IO error") and any(
        part in text for part in (".ldb", ".sst", ".log", "MANIFEST", "CURRENT")
    )


def repair(path: str) -> None:
    """Run LevelDB's repair on a directory; it salvages what the files still hold."""
    if not os.path.isdir(path):
        raise DiskQueueError(f"{path} is not a directory")
    if not os.path.exists(os.path.join(path, "CURRENT")) and not any(
        name.endswith((".ldb", ".sst", ".log")) for name in os.listdir(path)
    ):
        raise DiskQueueError(f"{path} holds no LevelDB database to repair")
    try:
        plyvel.repair_db(path, paranoid_checks=True)
    except plyvel.Error as exc:
        text = exc.args[0] if exc.args else exc
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if "lock" in str(text):
            raise Locked(path, read_pid(path)) from exc
        raise DiskQueueError(f"repair of {path} failed: {text}") from exc

