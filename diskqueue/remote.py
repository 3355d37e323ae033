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
from .server import _HEAD_TAKES, _METHODS, RECEIVED

log = logging.getLogger("diskqueue.remote")

TAKEOVER_TIMEOUT = 10.0
_RECEIVED = protocol.pack(RECEIVED)


class _Conn:
    """One connection to the owner; a thread has it to itself for the length of a call."""

    __slots__ = ("sock", "reader")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = protocol.FrameReader(sock)

    def close(self, goodbye: bool) -> None:
        try:
            if goodbye:
                self.sock.sendall(protocol.pack("bye"))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class RemoteEngine:
    """Each call borrows an idle connection, or opens one, so a thread blocked in a call
    never holds up the calls of the process's other threads."""

    def __init__(self, path: str, *, connect: bool = True) -> None:
        self.path = path
        self.refs = 0
        self.closed = False
        self.forked = False
        self._reset()
        if connect:
            conn = self._reach(time.monotonic() + TAKEOVER_TIMEOUT)
            if conn is not None:
                self._idle.append(conn)

    def _reset(self) -> None:
        """Fresh connection state (also in a child after fork(): nothing is shared)."""
        self.pid = os.getpid()
        self._lock = threading.Lock()  # guards _idle and closed
        self._taking_over = threading.Lock()  # one thread at a time opens the directory
        self._idle: list[_Conn] = []
        self._local: Any = None  # an Engine once this process took the directory over

    @property
    def role(self) -> str:
        return "owner" if self._local is not None else "client"

    # -- reaching the directory ------------------------------------------------
    def _reach(self, deadline: float) -> Optional[_Conn]:
        """A new connection to the owner, or None once this process is the owner;
        ``Locked`` at ``deadline``."""
        from .engine import Engine

        pause = 0.005
        while self._local is None:
            try:
                return _Conn(self._connect())
            except OSError:
                pass
            with self._taking_over:
                if self._local is not None:
                    break
                try:
                    self._local = Engine(self.path)
                    log.info("took over %s", self.path)
                    break
                except Locked as exc:
                    if time.monotonic() >= deadline:
                        raise exc from None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        return None

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
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._reach(deadline or time.monotonic() + TAKEOVER_TIMEOUT)
                if conn is None:
                    continue  # this process holds the directory now
            try:
                conn.sock.sendall(protocol.pack([method, list(args), kwargs]))
                reply = conn.reader.read()
                if method in _HEAD_TAKES and reply[0] == 0:
                    # Tell the owner the item arrived, so it is not held for us any longer.
                    conn.sock.sendall(_RECEIVED)
            except (OSError, protocol.ProtocolError):
                conn.close(goodbye=False)
                self._drop_idle()  # the owner went away: its other connections are dead
                deadline = deadline or time.monotonic() + TAKEOVER_TIMEOUT
                continue
            self._put_back(conn)
            if reply[0] == 0:
                return reply[1]
            protocol.raise_reply(reply[1], reply[2])

    def _put_back(self, conn: _Conn) -> None:
        with self._lock:
            if not self.closed and self.pid == os.getpid():
                self._idle.append(conn)
                return
        conn.close(goodbye=self.pid == os.getpid())

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close(goodbye=False)

    def _reset_after_fork(self) -> None:
        from .engine import orphan

        if self._local is not None:
            orphan(self._local)
        for conn in self._idle:
            conn.close(goodbye=False)  # our copy only: the parent's connection stays up
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
            idle, self._idle = self._idle, []
            local, self._local = self._local, None
            ours = self.pid == os.getpid()
        for conn in idle:
            conn.close(goodbye=ours)
        if local is not None and ours:
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
