"""The owner-side engine: one per directory per process, holding every state change.

Handles (Queue, Stack, PriorityQueue, PrefixQueue, the task layer) call these methods
with raw bytes; a socket server can expose the same methods unchanged. Every mutation
is computed first, written as one atomic batch together with the pointers it moves,
and only then applied in memory, so a failed write leaves the structure unchanged.
"""

from __future__ import annotations

import logging
import shutil
from typing import Optional

from .api import Closable, Entry, Registrar
from .core import FORMAT_VERSION
from .holds import Holds
from .inherited import Inheritance
from .interrupted import Interruptions
from .leases import Reservations
from .push import Pushes
from .records import Records
from .store import Store
from .take import Takes
from .watches import Watches

log = logging.getLogger("diskqueue.engine")

__all__ = ["Engine", "Entry", "FORMAT_VERSION"]


class Engine(Pushes, Takes, Holds, Reservations, Records, Inheritance, Interruptions,
             Watches):
    """The owner of one directory in this process: its parts over
    :class:`~diskqueue.engine.core.Core`, and a server letting other processes in.

    Opening raises ``Locked`` when another process holds the directory, ``Corrupted``
    when its pointer records cannot be read.
    """

    def __init__(self, path: str) -> None:
        self._server: Optional[Closable] = None
        self._registrar: Optional[Registrar] = None
        super().__init__(path)

    role = "owner"

    def attach(self, server: Optional[Closable], registrar: Registrar) -> None:
        """Take the server that lets other processes in (closed with the engine, or
        None when it could not start) and the registry that counts this engine's
        handles (see :mod:`diskqueue.sharing.registry`)."""
        self._server = server
        self._registrar = registrar

    def detach_after_fork(self) -> Store:
        """In a child after fork(): refuse every later call, let go of this process's
        copies of the server's sockets (closing nothing for the parent), and hand back
        the store, which must never be freed here (its destructor would wait for a
        LevelDB thread that only the parent has)."""
        if self._server is not None:
            self._server.forget_after_fork()
        self.forked = True
        return self._store

    def release(self) -> None:
        """Drop one handle's reference; the last one closes the database."""
        if self._registrar is None or self._registrar.forget(self):
            self.close()

    def close(self) -> None:
        """Stop serving other processes, then close the directory (see
        :meth:`Core.close`). Idempotent."""
        try:
            self._stop_serving()
        finally:  # even when a signal handler's exception ended that
            super().close()
        if self._registrar is not None:
            self._registrar.closed(self)

    def _stop_serving(self) -> None:
        if self._server is None or self.forked:
            return
        try:
            self._server.close()
        except BaseException:
            # A signal handler's exception ended the wait for the server's thread: wait
            # again, since it must end before the directory is let go (its last step
            # removes its socket file, which could by then be the next holder's).
            self._server.close()
            raise

    def destroy(self) -> None:
        """Close for every handle and delete the directory."""
        if self._registrar is not None:
            self._registrar.drop(self)
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
