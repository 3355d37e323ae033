"""The owner's side of a shared directory: serve the engine over a Unix socket.

The process holding a directory's LevelDB runs one accept thread and one thread per
connected client; each request is one engine method call, checked first
(:mod:`diskqueue.requests`: a bad one gets a ``TypeError``/``ValueError`` reply, an
expired one an ``Expired`` reply, and the connection stays up).

Nothing a client takes is gone before the client has it. Every take of its last reply
is *held*: a take from the head as a reservation of its connection, a pop from the top
as a held record (:mod:`diskqueue.holds`). The client's ``"got it"`` (or its next
request) lets them go; its ``"put back"`` returns them, and the reservations that
reply made, with their attempts as before; a connection that ends returns them too,
and a holder that dies leaves them on disk for the next one to return.

Messages of any size travel in chunks (:mod:`diskqueue.protocol`); a request over
:data:`MAX_REQUEST` is read past and refused, and partly received requests of all
clients together are bounded by :data:`MAX_BUFFERED`. The accept thread keeps going
when the process runs out of file descriptors (a spare one lets it tell the opener so),
and recreates the socket file when someone removes it. ``close()`` first waits, briefly,
for the confirmations of replies already sent, so that a graceful handover never
delivers an item twice.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from . import protocol, requests
from .errors import DiskQueueError, Empty, Full

if TYPE_CHECKING:
    from .engine import Engine, Entry

log = logging.getLogger("diskqueue.server")

_METHODS = requests.METHODS  # what remote.py builds its methods from
_HEAD_TAKES = requests.TAKES
RECEIVED = "got it"  # a client's word that a reply arrived; no reply to it
PUT_BACK = "put back"  # ...that it did not: return what the reply took
BYE = "bye"
_SLICE = 0.2  # seconds a blocking call waits before checking its client is still there
SETTLE_WAIT = 0.05  # close(): the longest wait for confirmations of replies sent
WATCH_EVERY = 1.0  # seconds between checks that the socket file is still ours
MAX_REQUEST = 256 * 1024 * 1024  # bytes of one request
MAX_BUFFERED = 1024 * 1024 * 1024  # bytes of partly received requests, all clients
_FD_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Held = tuple[bytes, bytes, int, int]  # (ns, lane, seq, attempts) of a reservation


class _Leaving(Exception):
    """The client left, or the holder is closing, during a blocking call."""


class _Client:
    """One connection, and what the holder keeps for it until it confirms its last
    reply. The object is also the owner of the connection's reservations."""

    __slots__ = ("sock", "held", "tops", "reserved", "calling", "__weakref__")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.held: list[Held] = []  # takes from the head, held as reservations
        self.tops: list[int] = []  # pops from the top, held as records
        self.reserved: list[Held] = []  # reservations the last reply made (reserve)
        self.calling = False


class Server:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.path = engine.path
        self._sock_path = os.path.join(self.path, protocol.SOCKET_NAME)
        self._closing = False
        self._clients: set[_Client] = set()
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # a client settled or left
        self._budget = protocol.Budget(MAX_BUFFERED)
        self._starved = False  # out of file descriptors since the last accept
        self._spare: Optional[int] = _spare_fd()
        self._sock, self._ino = self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="diskqueue-serve",
                                        daemon=True)
        self._thread.start()

    # -- the listening socket -------------------------------------------------
    def _listen(self) -> tuple[socket.socket, int]:
        mode = os.stat(self.path).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise DiskQueueError(
                f"{self.path} is world-writable; other users could replace its socket. "
                f"Run `chmod o-w {self.path}` to share it between processes"
            )
        address, keep = protocol.socket_address(self.path)
        try:
            try:
                os.unlink(self._sock_path)  # left by an owner that died: we hold the lock
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(address)
                os.chmod(self._sock_path, 0o600)  # before listen(): nobody connects yet
                sock.listen(128)
                ino = os.stat(self._sock_path).st_ino
            except BaseException:
                sock.close()
                raise
            sock.settimeout(WATCH_EVERY)  # accept() wakes up to check the socket file
            return sock, ino
        finally:
            protocol.release_address(keep)

    def _check_socket_file(self) -> None:
        """Bind a new socket when ours was removed (a tmp cleaner) or replaced."""
        try:
            ours = os.stat(self._sock_path).st_ino == self._ino
        except OSError:
            ours = False
        if ours or self._closing:
            return
        log.warning("%s was removed; listening on a new one", self._sock_path)
        try:
            sock, ino = self._listen()
        except (OSError, DiskQueueError) as exc:
            log.warning("cannot recreate %s: %s", self._sock_path, exc)
            return
        old, self._sock, self._ino = self._sock, sock, ino
        old.close()

    def _accept_loop(self) -> None:
        checked = time.monotonic()
        while not self._closing:
            if time.monotonic() - checked >= WATCH_EVERY:
                self._check_socket_file()
                checked = time.monotonic()
            listener = self._sock
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._closing:
                    return
                if exc.errno in _FD_ERRORS:
                    self._out_of_fds(listener)
                elif listener is self._sock:
                    log.warning("accept on %s failed: %s", self._sock_path, exc)
                    time.sleep(0.05)
                continue
            self._starved = False
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        if not _same_user(conn):
            conn.close()
            return
        client = _Client(conn)
        with self._lock:
            if self._closing:
                conn.close()
                return
            self._clients.add(client)
        try:
            threading.Thread(target=self._serve, args=(client,), name="diskqueue-client",
                             daemon=True).start()
        except RuntimeError:  # no thread to be had: tell the opener rather than hang it
            with self._lock:
                self._clients.discard(client)
            _refuse(conn, "the holder cannot start a thread for another connection")

    def _out_of_fds(self, listener: socket.socket) -> None:
        """No file descriptor for a new connection: log it once per burst, refuse the
        opener through the spare descriptor (it gets an error, not a hang), back off."""
        if not self._starved:
            log.warning("%s: out of file descriptors; refusing new connections until "
                        "some close (raise RLIMIT_NOFILE to serve more)", self.path)
            self._starved = True
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
            try:
                conn, _ = listener.accept()
            except OSError:
                pass
            else:
                _refuse(conn, "the holder is out of file descriptors; retry later or "
                              "raise its RLIMIT_NOFILE")
            self._spare = _spare_fd()
        time.sleep(0.01)

    # -- one connection ---------------------------------------------------------
    def _serve(self, client: _Client) -> None:
        reader = protocol.FrameReader(client.sock, MAX_REQUEST, self._budget)
        try:
            while True:
                reply: Optional[list[Any]] = None
                try:
                    request = reader.read()
                except protocol.TooLarge as exc:
                    self._settle(client, put_back=False)
                    request, reply = None, [1, "DiskQueueError", str(exc)]
                else:
                    if request == PUT_BACK:
                        self._settle(client, put_back=True)
                        continue
                    self._settle(client, put_back=False)  # any next word confirms
                    if request == RECEIVED:
                        continue
                    if request == BYE:
                        return
                if not self._begin(client):
                    return  # closing: the call is left to the next holder
                try:
                    if reply is None:
                        reply = self._call(client, request)
                    client.sock.sendall(protocol.pack(reply))
                finally:
                    self._end(client)
        except (ConnectionError, protocol.ProtocolError, OSError, _Leaving) as exc:
            log.debug("client of %s went away: %s", self.path, exc)
        finally:
            with self._lock:
                self._clients.discard(client)
                self._settled.notify_all()
            client.sock.close()
            self._let_go(client)

    def _begin(self, client: _Client) -> bool:
        with self._lock:
            if self._closing:
                return False
            client.calling = True
            return True

    def _end(self, client: _Client) -> None:
        with self._lock:
            client.calling = False
            if self._closing:
                self._settled.notify_all()

    def _settle(self, client: _Client, put_back: bool) -> None:
        """The client's word on its last reply: let go of its takes, or return them."""
        held, tops, reserved = client.held, client.tops, client.reserved
        if not (held or tops or reserved):
            return
        client.held, client.tops, client.reserved = [], [], []
        engine = self._engine
        try:
            if put_back:
                engine.unreserve(held + reserved)
            elif held:
                self._ack(held)
            if tops:
                engine.settle_tops(tops, put_back)
        except DiskQueueError as exc:
            log.debug("settling a client's takes: %s", exc)
        if self._closing:
            with self._lock:
                self._settled.notify_all()

    def _ack(self, held: list[Held]) -> None:
        try:
            self._engine.ack_many(held)
        except DiskQueueError:  # one was cleared meanwhile: let go of the others
            for one in held:
                try:
                    self._engine.ack_many([one])
                except DiskQueueError:
                    pass

    def _let_go(self, client: _Client) -> None:
        """A connection ended: what it held and its reservations go back."""
        engine = self._engine
        if engine.closed:
            return  # held items stay on disk, and the next open returns them
        try:
            returned = engine.unreserve(client.held) + engine.settle_tops(client.tops, True)
            returned += engine.release_owner(client)
        except DiskQueueError as exc:
            log.debug("returning a client's items: %s", exc)
            return
        if returned:
            log.info("returned %d items of a client that went away", returned)

    # -- calls ------------------------------------------------------------------
    def _call(self, client: _Client, request: object) -> list[Any]:
        try:
            method, kwargs, deadline = requests.parse(request)
        except (TypeError, ValueError) as exc:
            return protocol.error_reply(exc)
        if deadline is not None and time.time() > deadline:
            return [1, "Expired", f"the holder did not start {method}() before its "
                                  "deadline; it was not run"]
        try:
            if method in _HEAD_TAKES:
                return [0, self._take(client, method, kwargs)]
            call = getattr(self._engine, method)
            if method == "join":  # waits as long as the items take: in slices too
                return [0, self._sliced(client, call, kwargs, block=True)]
            return [0, self._sliced(client, call, kwargs)]
        except _Leaving:
            raise
        except Exception as exc:  # a reply, never a dropped connection
            if not isinstance(exc, (DiskQueueError, TypeError, ValueError, KeyError)):
                log.warning("%s() of a client raised", method, exc_info=True)
            return protocol.error_reply(exc)

    def _take(self, client: _Client, method: str, a: dict[str, Any]) -> Any:
        """Serve a take so that what it takes is held for the client."""
        engine = self._engine
        lease = a.get("lease")
        if method == "take_first":
            if lease is not None:
                ns, entry = self._sliced(client, engine.take_first, {**a, "owner": client})
                client.reserved = [(ns, entry[0], entry[1], entry[4])]
                return [ns, entry]
            ns, entry = self._sliced(client, engine.take_first,
                                     {**a, "lease": math.inf, "owner": client})
            return [ns, self._hold(client, ns, [entry])[0]]
        n = a.get("n", 1)
        where = {"lane": a["lane"], "block": a["block"], "timeout": a["timeout"]}
        if method != "take_run":
            where["desc"] = a["desc"]
        if method == "take" and lease is not None:
            entries = self._sliced(client, engine.take, {**a, "owner": client})
            client.reserved = [(a["ns"], e[0], e[1], e[4]) for e in entries]
            return entries
        if a["from_tail"]:
            entries, client.tops = self._sliced(client, engine.hold_top,
                                                {"ns": a["ns"], "n": n, **where})
        else:
            entries = self._hold(client, a["ns"], self._sliced(
                client, engine.take,
                {"ns": a["ns"], "n": n, **where, "lease": math.inf, "owner": client}))
        if method == "pop_one":
            return entries[0]
        if method == "take_run":
            return [[e[1] for e in entries], [[e[2], e[3]] for e in entries]]
        return entries

    @staticmethod
    def _hold(client: _Client, ns: bytes, entries: list[Entry]) -> list[Any]:
        """Note head takes as held; the client sees them as dequeued (attempts 0)."""
        client.held = [(ns, e[0], e[1], e[4]) for e in entries]
        return [[lane, seq, key, data, 0] for lane, seq, key, data, _ in entries]

    def _sliced(self, client: _Client, call: Callable[..., Any], kwargs: dict[str, Any],
                block: bool = False) -> Any:
        """Run a call that may block in slices, giving up when the client has gone or
        the holder closes (the call did nothing then, and the client asks the next)."""
        if not (block or kwargs.get("block")):
            return call(**kwargs)
        timeout: Optional[float] = kwargs.get("timeout")
        left = timeout
        while True:
            step = _SLICE if left is None else min(_SLICE, left)
            try:
                return call(**{**kwargs, "timeout": step})
            except (Empty, Full):
                if left is not None:
                    left -= step
                    if left <= 0:
                        raise
                if self._closing or _gone(client.sock):
                    raise _Leaving("client left during a blocking call") from None

    # -- closing ------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving: wait (at most :data:`SETTLE_WAIT`) for confirmations of the
        replies sent, then end every connection; clients move to the next holder."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            end = time.monotonic() + SETTLE_WAIT
            while any(c.calling or c.held or c.tops for c in self._clients):
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._settled.wait(left)
            clients = list(self._clients)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._sock.close()
        for client in clients:
            try:
                client.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            if os.stat(self._sock_path).st_ino == self._ino:
                os.unlink(self._sock_path)
        except OSError:
            pass
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None

    def forget_after_fork(self) -> None:
        """In a child after fork(): close this process's copies of the listening socket
        and of every connection, with close() alone. shutdown() would end them for the
        parent too; the parent (or the next holder) goes on serving."""
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._settled = threading.Condition(self._lock)
        self._closing = True
        clients, self._clients = list(self._clients), set()
        for sock in [self._sock, *(c.sock for c in clients)]:
            try:
                sock.close()
            except OSError:
                pass
        if self._spare is not None:
            try:
                os.close(self._spare)
            except OSError:
                pass
            self._spare = None


def _refuse(conn: socket.socket, why: str) -> None:
    """Answer an opener's first request with an error, then close."""
    try:
        conn.settimeout(0.2)
        try:
            protocol.FrameReader(conn, limit=0).read()
        except (protocol.TooLarge, protocol.ProtocolError, OSError):
            pass
        conn.sendall(protocol.pack([1, "DiskQueueError", why]))
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        conn.close()


def _spare_fd() -> Optional[int]:
    """A descriptor kept in reserve to accept (and refuse) an opener when the process
    has none left."""
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


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
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    except OSError:
        return False
    _, uid, _ = struct.unpack("3i", creds)
    return uid == os.getuid()
