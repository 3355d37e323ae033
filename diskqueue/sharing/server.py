"""The owner's side of a shared directory: serve the engine over a Unix socket.

One I/O thread serves every connection (``selectors``, non-blocking sockets): it reads
requests as their bytes come (:class:`diskqueue.connection.Inbox`), checks each before
it runs (:mod:`diskqueue.requests`: a bad one gets a ``TypeError``/``ValueError``
reply, an expired one an ``Expired`` reply, and the connection stays up), runs it, and
sends the reply as fast as the client takes it. Calls that wait for an fsync run in a
small pool. A call that blocks (``dequeue(block=True)``, a ``put`` under ``maxsize``,
``join``) holds no thread: it is *parked*, and tried again when the engine has a new
item or room (one waiter thread per kind listens for that), every :data:`RETRY`
seconds, and at its deadline.

Nothing a client takes is gone before the client has it. Every take of its last reply
is *held*: a take from the head as a reservation of its connection, a pop from the top
as a held record (:mod:`diskqueue.holds`). The client's ``"got it"`` (or its next
request) lets them go; its ``"put back"`` returns them, and the reservations that
reply made, with their attempts as before; a connection that ends returns them too,
and its other reservations when the client closed it or died (a live client that gave
up on it keeps them: see :func:`diskqueue.sharing.connection.let_go`).
A holder that dies or closes leaves them on disk, naming the client process, and the
next one keeps them while that process lives (:mod:`diskqueue.inherited`).

Messages of any size travel in chunks (:mod:`diskqueue.protocol`); a request over
:data:`MAX_REQUEST` is read past and refused, and partly received requests of all
clients together are bounded by :data:`MAX_BUFFERED`. The loop keeps accepting when
the process runs out of file descriptors (a spare one lets it tell the opener so), and
recreates the socket file when someone removes it. ``close()`` first waits, briefly,
for the confirmations of replies already sent. A client's push is written with a
receipt, so that the same request sent again after a takeover lands once
(:mod:`diskqueue.sharing.receipts`).

For tests only: with the environment variable ``DISKQUEUE_TEST_KILL_BEFORE_REPLY`` set
to a method name, the holder SIGKILLs itself after running a client's call of that
method and before replying (the moment a reply is lost in a takeover).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import selectors
import signal
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from ..engine import holders
from ..engine.api import HolderAPI
from ..errors import DiskQueueError
from . import peercred, protocol, receipts, requests
from .connection import (
    MAX_PENDING,
    Client,
    Inbox,
    Parked,
    Unwritten,
    let_go,
    listen,
    refuse,
    same_user,
    serve_take,
    settle,
    spare_fd,
)

log = logging.getLogger("diskqueue.server")

_HEAD_TAKES = requests.TAKES
RECEIVED = "got it"  # a client's word that a reply arrived; no reply to it
PUT_BACK = "put back"  # ...that it did not: return what the reply took
BYE = "bye"
RETRY = 0.2  # seconds between tries of a parked call, whatever the engine says
SETTLE_WAIT = 0.05  # close(): the longest wait for confirmations of replies sent
WATCH_EVERY = 1.0  # seconds between checks that the socket file is still ours
MAX_REQUEST = 256 * 1024 * 1024  # bytes of one request
MAX_BUFFERED = 1024 * 1024 * 1024  # bytes of partly received requests, all clients
_POOLED = frozenset({"sync", "push_durable", "clear"})  # calls that wait for the disk
_POLLS = 64  # empty non-blocking selects before the loop sleeps (a busy client's next
# call is usually microseconds away, and waking a sleeping thread costs more)
_FD_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_LISTENER, _WAKE = "listener", "wake"
_KILL_BEFORE_REPLY = os.environ.get("DISKQUEUE_TEST_KILL_BEFORE_REPLY")  # a test hook


def _spins() -> int:
    """How many times the loop polls before it sleeps, after an event: none while every
    core is busy (:func:`protocol.spinning_pays`: it would take the clients' time)."""
    return _POLLS if protocol.spinning_pays() else 0


class Server:
    """Serves ``engine`` to other processes through the socket in its directory, from
    :meth:`start` until :meth:`close` (or, in a forked child, :meth:`forget_after_fork`).
    Its socket is bound when it is made: other processes wait for it from then on."""

    def __init__(self, engine: HolderAPI) -> None:
        self._engine = engine
        self.path = engine.path
        self._sock_path = os.path.join(self.path, protocol.SOCKET_NAME)
        self._closing = False
        self._clients: set[Client] = set()
        self._parked: dict[Client, Parked] = {}
        self._budget = protocol.Budget(MAX_BUFFERED)
        self._starved = False  # out of file descriptors since the last accept
        self._spare: Optional[int] = spare_fd()
        self._scratch = bytearray(256 * 1024)  # what each recv reads into
        self._view = memoryview(self._scratch)
        self._soonest = math.inf  # the earliest deadline of a parked call
        self._done: deque[tuple[Client, list[Any]]] = deque()  # replies from the pool
        self._pool: Optional[ThreadPoolExecutor] = None
        self._resume_at: Optional[float] = None  # listen again then (out of descriptors)
        self._hot: Optional[Client] = None  # the client served last
        # when to delete the receipts of ended clients next
        self._next_sweep = time.monotonic() + receipts.SWEEP_EVERY
        # Confirmations of clients that left, not yet written (a full disk)
        self._unwritten = Unwritten()
        self._kick = {False: threading.Event(), True: threading.Event()}  # waiters
        self._sock, self._ino = self._listen()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._sel.register(self._sock, selectors.EVENT_READ, _LISTENER)
        self._thread = threading.Thread(target=self._run, name="diskqueue-serve",
                                        daemon=True)
        self._wound_down = threading.Lock()  # held once _wind_down began

    def start(self) -> None:
        """Serve: start the loop's thread, and those that wait for the engine."""
        self._thread.start()
        for room in (False, True):
            threading.Thread(target=self._wait_engine, args=(room,), daemon=True,
                             name="diskqueue-wait").start()

    # -- the listening socket -------------------------------------------------
    def _listen(self) -> tuple[socket.socket, int]:
        return listen(self.path, self._sock_path)

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
        self._sel.unregister(self._sock)
        self._sock.close()
        self._sock, self._ino = sock, ino
        self._sel.register(sock, selectors.EVENT_READ, _LISTENER)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _FD_ERRORS:
                    self._out_of_fds()
                else:
                    log.warning("accept on %s failed: %s", self._sock_path, exc)
                return
            self._starved = False
            if not same_user(conn):
                conn.close()
                continue
            conn.setblocking(False)
            peer = peercred.peer_of(conn)
            client = Client(conn, Inbox(MAX_REQUEST, self._budget),
                            holders.identity(peer.pid if peer else None))
            self._clients.add(client)
            self._sel.register(conn, selectors.EVENT_READ, client)

    def _out_of_fds(self) -> None:
        """No file descriptor for a new connection: log it once per burst, refuse an
        opener through the spare descriptor (it gets an error, not a hang), and stop
        listening for a moment."""
        if not self._starved:
            log.warning("%s: out of file descriptors; refusing new connections until "
                        "some close (raise RLIMIT_NOFILE to serve more)", self.path)
            self._starved = True
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
            try:
                conn, _ = self._sock.accept()
            except OSError:
                pass
            else:
                refuse(conn, "the holder is out of file descriptors; retry later or "
                              "raise its RLIMIT_NOFILE")
            self._spare = spare_fd()
        if self._spare is None:
            self._sel.unregister(self._sock)
            self._resume_at = time.monotonic() + 0.05

    # -- the loop -----------------------------------------------------------------
    def _run(self) -> None:
        next_check = next_retry = time.monotonic() + WATCH_EVERY
        polls = _POLLS
        try:
            while not self._closing:
                hot = self._hot
                if hot is not None and polls % 8:  # between selects, poll the client
                    polls -= 1  # served last: its next call is the likeliest next event
                    if self._read(hot):
                        polls = _spins()
                    continue
                events = self._sel.select(0)
                if events:
                    polls = _spins()
                elif polls:
                    polls -= 1
                    continue
                else:
                    events = self._sel.select(self._sleep_for(next_retry))
                    polls = _spins() if events else 0
                for key, mask in events:
                    if key.data is _LISTENER:
                        self._accept()
                    elif key.data is _WAKE:
                        self._woken()
                    else:
                        self._ready(key.data, mask)
                now = time.monotonic()
                if self._parked and (now >= next_retry or self._due(now)):
                    self._retry(None, now)
                    next_retry = now + RETRY
                if now >= next_check:
                    self._check_socket_file()
                    self._check_holders()
                    next_check = now + WATCH_EVERY
                if self._resume_at is not None and now >= self._resume_at:
                    self._resume_at = None
                    self._sel.register(self._sock, selectors.EVENT_READ, _LISTENER)
        except Exception:  # the loop must not die silently: say why, close what it had
            log.exception("the server of %s stopped", self.path)
        finally:
            self._wind_down()

    def _sleep_for(self, next_retry: float) -> Optional[float]:
        now = time.monotonic()
        until = now + WATCH_EVERY
        if self._parked:
            until = min(until, next_retry, self._soonest)
        if self._resume_at is not None:
            until = min(until, self._resume_at)
        return max(until - now, 0.0)

    def _due(self, now: float) -> bool:
        return self._soonest <= now

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # already awake, or closed

    def _woken(self) -> None:
        try:
            signals = os.read(self._wake_r, 4096)
        except (BlockingIOError, OSError):
            signals = b""
        while self._done:
            client, reply = self._done.popleft()
            client.busy = False
            if client in self._clients:
                self._reply(client, reply)
                self._serve(client)
        if self._parked and (b"r" in signals or b"w" in signals):
            room = None if b"r" in signals and b"w" in signals else b"w" in signals
            self._retry(room, time.monotonic())

    def _ready(self, client: Client, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(client)
        if mask & selectors.EVENT_READ and client in self._clients:
            self._read(client)

    def _read(self, client: Client) -> bool:
        """Read what the client sent and serve it; False when nothing had come."""
        try:
            n = client.sock.recv_into(self._scratch)
            if not n:
                raise ConnectionError("the client closed its end")
            client.pending.extend(client.inbox.feed(self._view[:n]))
            # A client sends a request only once it has the last reply (control words
            # aside): what one connection can make the holder keep stays bounded.
            if len(client.pending) > MAX_PENDING or client.busy and any(
                    type(m) is not str for m in client.pending):
                raise protocol.ProtocolError("a request ahead of the last one's reply")
        except (BlockingIOError, InterruptedError):
            return False
        except (ConnectionError, protocol.ProtocolError, OSError) as exc:
            log.debug("client of %s went away: %s", self.path, exc)
            self._drop(client)
            return True
        self._hot = client
        self._serve(client)
        return True

    def _serve(self, client: Client) -> None:
        """Serve what the client sent; a client that fails goes, the others stay."""
        try:
            self._next(client)
        except (ConnectionError, protocol.ProtocolError, OSError) as exc:
            log.debug("client of %s went away: %s", self.path, exc)
            self._drop(client)
        except Exception:  # a bug must cost one connection, never the holder's serving
            log.exception("serving a client of %s", self.path)
            self._drop(client)

    def _next(self, client: Client) -> None:
        """Serve what the client sent, in order, while nothing of it is under way."""
        while client.pending and not client.busy and client in self._clients:
            message = client.pending.popleft()
            if message == PUT_BACK:
                self._settle(client, put_back=True)
                continue
            self._settle(client, put_back=False)  # any next word confirms
            if message == RECEIVED:
                continue
            if message == BYE:
                client.bye = True
                raise ConnectionError("the client said goodbye")
            if self._closing:
                raise ConnectionError("closing: the call is left to the next holder")
            if isinstance(message, protocol.TooLarge):
                self._reply(client, [1, "DiskQueueError", str(message)])
                continue
            self._call(client, message)

    def _reply(self, client: Client, reply: list[Any]) -> None:
        data = protocol.pack(reply)
        if not client.out:  # the common case: the socket takes it all at once
            try:
                sent = client.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                log.debug("client of %s went away: %s", self.path, exc)
                self._drop(client)
                return
            if sent == len(data):
                return
        else:
            sent = 0
        client.out.append(memoryview(data)[sent:])
        self._flush(client)

    def _flush(self, client: Client) -> None:
        try:
            done = client.flush()
        except OSError as exc:
            log.debug("client of %s went away: %s", self.path, exc)
            self._drop(client)
            return
        if done == client.writing:  # start or stop waiting for the socket to take more
            client.writing = not done
            events = selectors.EVENT_READ | (0 if done else selectors.EVENT_WRITE)
            self._sel.modify(client.sock, events, client)

    def _drop(self, client: Client) -> None:
        if self._hot is client:
            self._hot = None
        if client not in self._clients:
            return
        self._clients.discard(client)
        self._parked.pop(client, None)
        try:
            self._sel.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()
        client.inbox.release()
        self._let_go(client)

    def _settle(self, client: Client, put_back: bool) -> None:
        settle(self._engine, client, put_back)

    def _check_holders(self) -> None:
        """What live clients of the last holder held goes back once they die."""
        try:
            # at once when it inherited none; the notes of clients whose confirmations
            # are still to be written are kept, and those of every client still
            # connected: one that died may have confirmations this loop has not seen
            # fail yet (its connection's end is still to be read), and without its
            # notes the next holder would hand its takes out again
            keep = self._unwritten.holders | {c.holder for c in self._clients
                                               if c.holder is not None}
            returned = self._engine.check_holders(keep=keep)
        except DiskQueueError as exc:
            log.warning("returning the items of clients that died: %s", exc)
            return
        if returned:
            log.info("returned %d items of clients that died", returned)
        self._unwritten.retry(self._engine)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + receipts.SWEEP_EVERY
            try:
                receipts.sweep(self._engine)
            except DiskQueueError as exc:
                log.warning("deleting the receipts of clients that ended: %s", exc)

    def _let_go(self, client: Client) -> None:
        self._unwritten.add(let_go(self._engine, client, self._closing))

    # -- calls ------------------------------------------------------------------
    def _call(self, client: Client, request: object) -> None:
        try:
            method, kwargs, deadline, numbered = requests.parse(request)
        except (TypeError, ValueError) as exc:
            return self._reply(client, protocol.error_reply(exc))
        if deadline is not None and time.time() > deadline:
            return self._reply(client, [1, "Expired", f"the holder did not start {method}() "
                                                      "before its deadline; it was not run"])
        if numbered is not None and client.holder is not None \
                and method in receipts.RECEIPTED:
            slot, seq, again = numbered
            if again:  # sent before: it may have landed with a holder that went since
                try:
                    found, result = receipts.stored(self._engine, client.holder, slot, seq)
                except DiskQueueError as exc:
                    return self._reply(client, protocol.error_reply(exc))
                if found:
                    return self._reply(client, [0, result])
            kwargs = {**kwargs, "receipt": receipts.receipt(client.holder, slot, seq)}
        if method in _POOLED:
            client.busy = True
            self._pooled(client, method, kwargs)
            return None
        wait = method == "join" or bool(kwargs.get("block"))
        if wait:
            timeout = kwargs.get("timeout")
            parked = Parked(method, {**kwargs, "block": False} if method != "join"
                            else {**kwargs, "timeout": 0},
                            None if timeout is None else time.monotonic() + timeout,
                            method in ("push_one", "push", "push_run"))
            if self._try(client, parked, final=False):
                return None
            client.busy = True
            self._parked[client] = parked
            if parked.deadline is not None:
                self._soonest = min(self._soonest, parked.deadline)
            self._kick[parked.room].set()
            return None
        self._reply(client, self._run_call(client, method, kwargs))
        return None

    def _run_call(self, client: Client, method: str, kwargs: dict[str, Any]) -> list[Any]:
        try:
            if method == "confirm":
                if client.holder is None:
                    raise DiskQueueError("confirm(): this platform does not say which "
                                         "process the client is")
                return [0, self._engine.confirm(**kwargs, holder=client.holder)]
            if method in _HEAD_TAKES:
                result = serve_take(self._engine, client, method, kwargs)
            else:
                result = getattr(self._engine, method)(**kwargs)
            if method == _KILL_BEFORE_REPLY:
                os.kill(os.getpid(), signal.SIGKILL)
            if client.tops and method in _HEAD_TAKES:
                return [0, result, client.tops]  # the client names its pops by these
            return [0, result]
        except Exception as exc:  # a reply, never a dropped connection
            if not isinstance(exc, (DiskQueueError, TypeError, ValueError, KeyError)):
                log.warning("%s() of a client raised", method, exc_info=True)
            return protocol.error_reply(exc)

    def _try(self, client: Client, parked: Parked, final: bool) -> bool:
        """One quick try of a waiting call; True when it answered the client."""
        reply = self._run_call(client, parked.method, parked.kwargs)
        if reply[0] == 1 and reply[1] in ("Empty", "Full") and not final:
            return False
        self._reply(client, reply)
        return True

    def _retry(self, room: Optional[bool], now: float) -> None:
        """Try the parked calls again (those waiting for room, for an item, or all)."""
        for client, parked in list(self._parked.items()):
            if room is not None and parked.room != room:
                continue
            final = parked.deadline is not None and parked.deadline <= now
            if client in self._clients and self._try(client, parked, final):
                self._parked.pop(client, None)
                client.busy = False
                self._serve(client)
        self._soonest = min((p.deadline for p in self._parked.values()
                             if p.deadline is not None), default=math.inf)

    def _pooled(self, client: Client, method: str, kwargs: dict[str, Any]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(4, thread_name_prefix="diskqueue-disk")

        def run() -> None:
            self._done.append((client, self._run_call(client, method, kwargs)))
            self._wake()

        self._pool.submit(run)

    def _wait_engine(self, room: bool) -> None:
        """Sleep in the engine until it has an item (or room) for the parked calls,
        then wake the loop: one thread for all of them."""
        kick = self._kick[room]
        signal = b"w" if room else b"r"
        while not self._closing:
            if not any(p.room == room for p in list(self._parked.values())):
                kick.clear()
                kick.wait(WATCH_EVERY)
                continue
            if self._engine.wait_for_change(room=room, timeout=RETRY):
                self._wake_with(signal)

    def _wake_with(self, signal: bytes) -> None:
        try:
            os.write(self._wake_w, signal)
        except (BlockingIOError, OSError):
            pass

    # -- closing ------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving: wait (at most :data:`SETTLE_WAIT`) for confirmations of the
        replies sent, then end every connection; clients move to the next holder."""
        if not self._closing:
            self._closing = True
            self._wake()
            for kick in self._kick.values():
                kick.set()
        if threading.current_thread() is self._thread:
            return
        try:
            self._thread.join(5)  # (again, when an exception ended the wait before)
        except RuntimeError:  # never started: its open was cut short
            self._wind_down()

    def _wind_down(self) -> None:
        """On the loop's way out: settle what can be settled in a moment, then end.
        Once only: a thread whose start an exception cut short may run its loop after
        close() wound the server down for it."""
        if not self._wound_down.acquire(blocking=False):
            return
        try:
            self._sel.unregister(self._sock)
        except (KeyError, ValueError):
            pass
        self._sock.close()
        end = time.monotonic() + SETTLE_WAIT
        while any(c.held or c.tops or (c.busy and c not in self._parked)
                  for c in self._clients):
            left = end - time.monotonic()
            if left <= 0:
                break
            for key, mask in self._sel.select(left):
                if key.data is _WAKE:
                    self._woken()
                elif key.data is not _LISTENER:
                    self._ready(key.data, mask)
        for client in list(self._clients):
            try:
                client.sock.shutdown(socket.SHUT_RDWR)  # forked copies end too
            except OSError:
                pass
            self._drop(client)
        try:
            if os.stat(self._sock_path).st_ino == self._ino:
                os.unlink(self._sock_path)
        except OSError:
            pass
        for fd in (self._spare, self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._spare = None
        self._sel.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def forget_after_fork(self) -> None:
        """In a child after fork(): close this process's copies of the listening socket,
        of every connection and of the loop's descriptors, with close() alone.
        shutdown() would end them for the parent too; the parent (or the next holder)
        goes on serving. No thread of the server exists in the child."""
        self._closing = True
        clients, self._clients = list(self._clients), set()
        self._parked = {}
        self._pool = None
        for sock in [self._sock, *(c.sock for c in clients)]:
            try:
                sock.close()
            except OSError:
                pass
        for fd in (self._spare, self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._spare = None
        try:
            self._sel.close()  # our copy of the epoll descriptor only
        except OSError:
            pass
