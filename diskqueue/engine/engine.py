"""The owner-side engine: one per directory per process, holding every state change.

Handles (Queue, Stack, PriorityQueue, PrefixQueue, the task layer) call these methods
with raw bytes; a socket server can expose the same methods unchanged. Every mutation
is computed first, written as one atomic batch together with the pointers it moves,
and only then applied in memory, so a failed write leaves the structure unchanged.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from typing import Any

from ..errors import DiskQueueError, Locked
from .core import FORMAT_VERSION, Entry
from .holds import Holds
from .inherited import Inheritance
from .leases import Reservations
from .push import Pushes
from .records import Records
from .store import Store
from .take import Takes

__all__ = ["FORMAT_VERSION", "Engine", "Entry", "acquire", "forget", "orphan"]

log = logging.getLogger("diskqueue.engine")

_registry: dict[str, Any] = {}
_registry_lock = threading.Lock()


# Stores inherited across fork(): kept alive forever, because freeing one in the child
# would run LevelDB's destructor, which waits for a background thread that only the
# parent has.
_orphans: list[Store] = []


def orphan(engine: Engine) -> None:
    """Forget an engine inherited across fork() without ever touching its LevelDB, and
    let go of the child's copies of its server's sockets: the listening one and the
    server ends of its clients' connections (else, once the parent dies, those clients
    and this child would wait on sockets that nobody serves)."""
    # forget_after_fork() closes the copies without shutting anything down.
    forget_server = getattr(engine._server, "forget_after_fork", None)
    if forget_server is not None:
        forget_server()
    engine.forked = True
    _orphans.append(engine._store)


def _before_fork() -> None:
    _registry_lock.acquire()


def _after_fork_in_parent() -> None:
    _registry_lock.release()


def _after_fork_in_child() -> None:
    """Handles inherited across fork() become clients of the parent (or its successor).

    The child lets go of its copies of the parent's sockets: those its server serves on
    (see ``orphan``), and the client ends of the parent's own connections.
    """
    from ..sharing.client import CONNECT_TIMEOUT, RemoteEngine

    try:
        for engine in _registry.values():
            if isinstance(engine, Engine):
                orphan(engine)
                engine.__class__ = RemoteEngine  # type: ignore[assignment]
                engine.forked = False
                engine.closed = False
                engine.connect_timeout = getattr(engine, "connect_timeout", CONNECT_TIMEOUT)  # type: ignore[attr-defined]
                RemoteEngine._reset(engine)  # type: ignore[arg-type]
            else:
                engine._reset_after_fork()
    finally:
        _registry_lock.release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def forget(engine: Any) -> bool:
    """Drop one reference to an engine (owner or client); True when it was the last."""
    path: str = engine.path
    with _registry_lock:
        engine.refs -= 1
        if engine.refs > 0:
            return False
        if _registry.get(path) is engine:
            del _registry[path]
        return True


def check_connect_timeout(value: Any) -> float:
    """A ``connect_timeout=`` argument as seconds, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"connect_timeout must be a number of seconds, not {type(value).__name__}")
    if not 0 < value < float("inf"):  # NaN fails this too
        raise ValueError(f"connect_timeout must be a finite number of seconds > 0, not {value}")
    return float(value)


def acquire(path: str, *, connect_timeout: float = 10.0) -> Any:
    """Return this process's engine for ``path``: the owner's, or a client of it.

    A holder that does not let this process in within ``connect_timeout`` seconds
    makes it ``Locked``. The handles of one path in one process share the engine, and
    with it the ``connect_timeout`` of the first one opened.
    """
    from ..sharing.client import RemoteEngine

    connect_timeout = check_connect_timeout(connect_timeout)
    with _registry_lock:
        engine: Any = _registry.get(path)
        if engine is None or engine.closed:
            try:
                engine = Engine(path)
            except Locked:
                engine = RemoteEngine(path, connect_timeout=connect_timeout)
            engine.connect_timeout = connect_timeout
            _registry[path] = engine
        engine.refs += 1
        return engine


class Engine(Pushes, Takes, Holds, Reservations, Records, Inheritance):
    """The owner of one directory in this process: its parts over
    :class:`~diskqueue.engine.core.Core`, and a server letting other processes in.

    Opening raises ``Locked`` when another process holds the directory, ``Corrupted``
    when its pointer records cannot be read.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._server: Any = None
        self._serve()

    role = "owner"

    def _serve(self) -> None:
        """Let other processes in through a socket in the directory."""
        from ..sharing.server import Server

        try:
            self._server = Server(self)
        except (OSError, DiskQueueError) as exc:
            log.warning("not serving %s to other processes: %s", self.path, exc)

    def release(self) -> None:
        """Drop one handle's reference; the last one closes the database."""
        if forget(self):
            self.close()

    def close(self) -> None:
        """Stop serving other processes, then close the directory (see
        :meth:`Core.close`). Idempotent."""
        if self._server is not None and not self.forked:
            self._server.close()
        super().close()

    def destroy(self) -> None:
        """Close for every handle and delete the directory."""
        with _registry_lock:
            if _registry.get(self.path) is self:
                del _registry[self.path]
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
