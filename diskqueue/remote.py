"""The client's side of a shared directory: the engine's methods over a Unix socket.

A ``RemoteEngine`` has the methods of :class:`diskqueue.engine.Engine` that handles
use, so a handle never knows which it has (``role`` says). When the owner closes or
dies, the next call takes the directory over (opening it here) or connects to
whichever process did, then repeats the call: callers see a pause, not an error. A
call repeated after a takeover may have landed before the owner died, so an enqueue
can, rarely, be stored twice: nothing acknowledged is ever lost.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Optional

from . import protocol
from .errors import Closed, Locked
from .server import _METHODS

log = logging.getLogger("diskqueue.remote")

TAKEOVER_TIMEOUT = 10.0


class RemoteEngine:
    def __init__(self, path: str, *, connect: bool = True) -> None:
        self.path = path
        self.refs = 0
        self.closed = False
        self.forked = False
        self._reset()
        if connect:
            with self._lock:
                self._reach(time.monotonic() + TAKEOVER_TIMEOUT)

    def _reset(self) -> None:
        """Fresh connection state (also in a child after fork(): nothing is shared)."""
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._reader: Optional[protocol.FrameReader] = None
        self._local: Any = None  # an Engine once this process took the directory over

    @property
    def role(self) -> str:
        return "owner" if self._local is not None else "client"

    # -- reaching the directory ------------------------------------------------
    def _reach(self, deadline: float) -> None:
        """Connect to the owner, or become it; give up with Locked at ``deadline``."""
        from .engine import Engine

        pause = 0.005
        while True:
            try:
                self._sock = self._connect()
                self._reader = protocol.FrameReader(self._sock)
                return
            except OSError:
                pass
            try:
                self._local = Engine(self.path)
                log.info("took over %s", self.path)
                return
            except Locked as exc:
                if time.monotonic() >= deadline:
                    raise exc from None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _connect(self) -> socket.socket:
        address, keep = protocol.socket_address(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        finally:
            protocol.release_address(keep)
        return sock

    # -- calls -----------------------------------------------------------------
    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        deadline: Optional[float] = None
        while True:
            local = self._local
            if local is not None:
                return getattr(local, method)(*args, **kwargs)
            with self._lock:
                if self.closed:
                    raise Closed(f"{self.path} is closed")
                if self.pid != os.getpid():
                    self._reset_after_fork()
                    continue
                try:
                    if self._sock is None:
                        self._reach(deadline or time.monotonic() + TAKEOVER_TIMEOUT)
                        continue
                    self._sock.sendall(protocol.pack([method, list(args), kwargs]))
                    reply = self._reader.read()  # type: ignore[union-attr]
                except (OSError, protocol.ProtocolError):
                    self._drop()
                    deadline = deadline or time.monotonic() + TAKEOVER_TIMEOUT
                    self._reach(deadline)
                    continue
            if reply[0] == 0:
                return reply[1]
            protocol.raise_reply(reply[1], reply[2])

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _reset_after_fork(self) -> None:
        from .engine import orphan

        if self._local is not None:
            orphan(self._local)
        if self._sock is not None:
            try:
                self._sock.close()  # our copy only: the parent's connection stays up
            except OSError:
                pass
        self._reset()

    # -- lifecycle -------------------------------------------------------------
    def release(self) -> None:
        from .engine import forget

        if forget(self):
            self.close()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self._sock is not None and self.pid == os.getpid():
                try:
                    self._sock.sendall(protocol.pack("bye"))
                except OSError:
                    pass
            self._drop()
            local, self._local = self._local, None
        if local is not None and self.pid == os.getpid():
            local.close()

    def destroy(self) -> None:
        if self._local is not None:
            local = self._local
            self.close()
            local.destroy()
            return
        raise Locked(self.path, None)


def _method(name: str) -> Any:
    def method(self: RemoteEngine, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, args, kwargs)

    method.__name__ = name
    return method


for _name in _METHODS:
    setattr(RemoteEngine, _name, _method(_name))
