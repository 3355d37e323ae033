"""The owner's side of a shared directory: serve the engine over a Unix socket.

The process holding a directory's LevelDB runs one accept thread and one thread per
connected client; each request is one engine method call. Only the methods in
``_METHODS`` can be called. A client's reservations are returned when it goes away,
and an item it dequeues from the head is held (not deleted) until the client confirms
that the reply arrived (it says so at once, and any next request or its goodbye says it
too), so a client dying mid-call loses nothing.
"""

from __future__ import annotations

import logging
import math
import os
import select
import socket
import stat
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from . import protocol
from .errors import DiskQueueError, Empty

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("diskqueue.server")

# Engine methods a client may call, by name.
_METHODS = frozenset({
    "push_one", "push", "push_run", "push_unless", "push_durable", "take", "take_run",
    "take_first", "pop_one",
    "find_reserved", "ack", "ack_many", "nack", "in_flight", "peek", "get", "update",
    "length", "lanes", "scan", "clear", "task_done", "join", "sync", "write_records",
    "get_record", "scan_records", "ensure_kind", "info",
})
_BLOCKING = frozenset({"take", "take_run", "take_first", "pop_one", "push_one", "push",
                       "push_run"})
_SLICE = 0.2  # seconds a blocking call waits before checking its client is still there
_HEAD_TAKES = frozenset({"take", "take_run", "take_first", "pop_one"})
RECEIVED = "got it"  # a client's word that a reply arrived; no reply to it


class Server:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.path = engine.path
        self._closing = False
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._sock = self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="diskqueue-serve",
                                        daemon=True)
        self._thread.start()

    def _listen(self) -> socket.socket:
        mode = os.stat(self.path).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise DiskQueueError(
                f"{self.path} is world-writable; other users could replace its socket. "
                f"Run `chmod o-w {self.path}` to share it between processes"
            )
        sock_path = os.path.join(self.path, protocol.SOCKET_NAME)
        address, keep = protocol.socket_address(self.path)
        try:
            try:
                os.unlink(sock_path)  # left by an owner that died: we hold the lock now
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(address)
            os.chmod(sock_path, 0o600)  # before listen(): nobody can connect until then
            sock.listen(128)
            return sock
        finally:
            protocol.release_address(keep)

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            if not _same_user(conn):
                conn.close()
                continue
            with self._lock:
                if self._closing:
                    conn.close()
                    return
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="diskqueue-client",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        owner = object()
        held: list[Any] = []  # head items this client took, not yet confirmed
        reader = protocol.FrameReader(conn)
        try:
            while True:
                request = reader.read()
                if request == "put back":  # the client refused its last take's items
                    for ns, lane, seq, attempts in held:
                        self._engine.nack(ns, lane, seq, attempts, True)
                    held.clear()
                    continue
                if held:
                    self._confirm(held)
                if request == RECEIVED:
                    continue
                if request == "bye":
                    return
                reply = self._call(conn, request, owner, held)
                conn.sendall(protocol.pack(reply))
        except (ConnectionError, protocol.ProtocolError, OSError) as exc:
            log.debug("client of %s went away: %s", self.path, exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()
            if not self._engine.closed:
                returned = self._engine.release_owner(owner)
                if returned:
                    log.info("returned %d items of a client that went away", returned)

    def _confirm(self, held: list[Any]) -> None:
        try:
            self._engine.ack_many(held)
        except DiskQueueError:
            log.debug("held items were cleared meanwhile")
        held.clear()

    def _call(self, conn: socket.socket, request: Any, owner: object,
              held: list[Any]) -> list[Any]:
        try:
            method, args, kwargs, *rest = request
            if rest and rest[0] is not None and time.time() > rest[0]:
                return [1, "Expired", f"{self.path}: the holder did not start the call "
                        "before its deadline; nothing was done"]
            if method not in _METHODS or not isinstance(args, list) \
                    or not isinstance(kwargs, dict):
                raise protocol.ProtocolError(f"no such call: {method!r}")
        except (TypeError, ValueError) as exc:
            raise protocol.ProtocolError(f"malformed request: {exc}") from exc
        try:
            if method in _HEAD_TAKES:
                return [0, self._head_take(conn, method, args, kwargs, owner, held)]
            if method in _BLOCKING and kwargs.get("block"):
                return [0, self._sliced(conn, getattr(self._engine, method), args, kwargs)]
            return [0, getattr(self._engine, method)(*args, **kwargs)]
        except protocol.ProtocolError:
            raise
        except (DiskQueueError, TypeError, ValueError, KeyError) as exc:
            return protocol.error_reply(exc)

    def _head_take(self, conn: socket.socket, method: str, args: list[Any],
                   kwargs: dict[str, Any], owner: object, held: list[Any]) -> Any:
        """A dequeue from the head is a reservation until the client confirms it."""
        engine = self._engine
        shape = "list"  # of entries; "one" entry for pop_one, "columns" for take_run
        if method == "pop_one":
            ns, lane, desc, from_tail, block, timeout = (args + [False, False, False, None])[:6]
            method, args, shape = "take", [ns, 1], "one"
            kwargs = {"lane": lane, "desc": desc, "from_tail": from_tail, "block": block,
                      "timeout": timeout}
        elif method == "take_run":
            ns, lane, n, from_tail, block, timeout = (args + [False, False, None])[:6]
            method, args, shape = "take", [ns, n], "columns"
            kwargs = {"lane": lane, "from_tail": from_tail, "block": block, "timeout": timeout}
        lease = kwargs.get("lease")
        if lease is None and not kwargs.get("from_tail"):
            kwargs["lease"] = math.inf
        kwargs["owner"] = owner
        call = getattr(engine, method)
        result = self._sliced(conn, call, args, kwargs) if kwargs.get("block") \
            else call(*args, **kwargs)
        if method == "take_first":
            ns, (lane, seq, key, data, attempts) = result
            if lease is None:
                held.append((ns, lane, seq, attempts))
                return [ns, [lane, seq, key, data, 0]]
            return result
        if lease is None and not kwargs.get("from_tail"):
            for lane, seq, _, _, attempts in result:
                held.append((args[0], lane, seq, attempts))
            result = [[lane, seq, key, data, 0] for lane, seq, key, data, _ in result]
        if shape == "one":
            return result[0]
        if shape == "columns":
            return [[e[1] for e in result], [[e[2], e[3]] for e in result]]
        return result

    def _sliced(self, conn: socket.socket, call: Any, args: list[Any],
                kwargs: dict[str, Any]) -> Any:
        """Run a blocking call in slices, giving up when the client has gone."""
        timeout: Optional[float] = kwargs.get("timeout")
        left = timeout
        while True:
            step = _SLICE if left is None else min(_SLICE, left)
            try:
                return call(*args, **{**kwargs, "timeout": step})
            except Empty:
                if left is not None:
                    left -= step
                    if left <= 0:
                        raise
                if _gone(conn):
                    raise ConnectionError("client left during a blocking call") from None

    def forget_after_fork(self) -> None:
        """In a child after fork(): close this process's copies of the listening socket
        and of the clients' connections, shutting nothing down (they are the parent's)."""
        self._closing = True
        for sock in [self._sock, *self._conns]:
            try:
                sock.close()
            except OSError:
                pass
        self._conns = set()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            conns = list(self._conns)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            os.unlink(os.path.join(self.path, protocol.SOCKET_NAME))
        except OSError:
            pass


def _gone(conn: socket.socket) -> bool:
    """True when the peer closed its end (it may not send anything while it waits)."""
    poller = select.poll()
    poller.register(conn, select.POLLIN | select.POLLHUP)
    for _, event in poller.poll(0):
        if event & select.POLLHUP:
            return True
        if event & select.POLLIN:
            try:
                return conn.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True
    return False


def _same_user(conn: socket.socket) -> bool:
    """On Linux, refuse a peer of another user even if the socket's mode let it in."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return True
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid == os.getuid()
