"""One client connection of a holder, as its single I/O thread sees it, and the
listening socket it comes through.

Bytes are read as they come (non-blocking) and cut into messages by an :class:`Inbox`,
which keeps only what has arrived (a header is never trusted with memory) and charges
what it keeps of unfinished messages to the holder's shared budget. Replies wait in an
outbox until the socket takes them, however slowly the client reads. The connection
also carries what the holder keeps for its client until it confirms its last reply:
held takes, reservations that reply made, and a call waiting for an item or for room.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import stat
import struct
from collections import deque
from typing import Any, NamedTuple, Optional

from ..engine import holders
from ..engine.api import Entry, HolderAPI
from ..engine.holders import Holder
from ..errors import DiskQueueError, NotReserved
from . import peercred, protocol

log = logging.getLogger("diskqueue.server")

_HEADER = struct.Struct(">I")
_MORE = 0x80000000
MAX_PENDING = 16  # requests of one client read ahead of the one being served

Held = tuple[bytes, bytes, int, int]  # (ns, lane, seq, attempts) of a reservation


class Inbox:
    """Messages out of bytes as they arrive (the reading side of a non-blocking socket).

    :meth:`feed` returns the messages the bytes completed; a message over ``limit`` is
    dropped as it arrives and comes out as a :class:`protocol.TooLarge` instead.
    """

    def __init__(self, limit: Optional[int], budget: Optional[protocol.Budget]) -> None:
        self._limit = limit
        self._budget = budget
        self._head = b""  # a header split across reads
        self._need = 0  # bytes of the current chunk's body still to come
        self._in_body = False
        self._more = False
        self._parts: list[bytes] = []  # the current message's bytes so far
        self._total = 0  # its size so far, headers' word for the current chunk included
        self._dropping = False
        self.counted = 0  # bytes of it charged to the budget

    def feed(self, data: bytes | memoryview) -> list[Any]:
        """Take the next bytes read; return the messages they completed, in order.

        Raises ``ProtocolError`` when a message does not unpack, a chunk is over the size
        limit, or the shared budget of partly received bytes would be exceeded (the caller
        drops the connection).
        """
        if not self._in_body and not self._head and len(data) > 4:
            (word,) = _HEADER.unpack_from(data, 0)  # the common case: one whole message
            if word + 4 == len(data) and word <= protocol.CHUNK and (
                    self._limit is None or word <= self._limit):
                return [protocol.unpack(data[4:])]
        if isinstance(data, memoryview):
            data = bytes(data)  # its buffer is reused by the next read
        out: list[Any] = []
        i, n = 0, len(data)
        while i < n:
            if not self._in_body:
                if self._head or n - i < 4:
                    take = 4 - len(self._head)
                    self._head += data[i : i + take]
                    i += min(take, n - i)
                    if len(self._head) < 4:
                        break
                    (word,) = _HEADER.unpack(self._head)
                    self._head = b""
                else:
                    (word,) = _HEADER.unpack_from(data, i)
                    i += 4
                size = word & ~_MORE
                if size > protocol.CHUNK:
                    raise protocol.ProtocolError(
                        f"a chunk of {size} bytes is over the {protocol.CHUNK}-byte limit")
                self._more = bool(word & _MORE)
                self._total += size
                if self._limit is not None and self._total > self._limit:
                    self._dropping = True
                    self._parts = []
                self._need, self._in_body = size, True
            else:
                take = min(self._need, n - i)
                if not self._dropping:
                    if self._budget is not None:
                        self._budget.take(take)
                        self.counted += take
                    self._parts.append(data[i : i + take] if take < n else data)
                i += take
                self._need -= take
            if self._in_body and not self._need:
                self._in_body = False
                if not self._more:
                    out.append(self._finish())
        return out

    def _finish(self) -> Any:
        try:
            if self._dropping:
                return protocol.TooLarge(self._total, self._limit or 0)
            body = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            return protocol.unpack(body)
        finally:
            self.release()
            self._parts, self._total, self._dropping = [], 0, False

    def release(self) -> None:
        """Give back to the budget what the unfinished message holds (also at the end)."""
        if self.counted and self._budget is not None:
            self._budget.give(self.counted)
        self.counted = 0


class Parked(NamedTuple):
    """A call that waits for an item (``room=False``) or for room, without a thread."""

    method: str
    kwargs: dict[str, Any]  # with block=False: each retry is one quick try
    deadline: Optional[float]  # monotonic; None waits for ever
    room: bool


class Client:
    """One connection, and what the holder keeps for it until it confirms its last
    reply. The object is also the owner of the connection's reservations."""

    __slots__ = ("sock", "inbox", "out", "pending", "held", "tops", "reserved", "parked",
                 "busy", "writing", "holder", "confirmed", "bye", "__weakref__")

    def __init__(self, sock: socket.socket, inbox: Inbox,
                 holder: Optional[Holder] = None) -> None:
        self.sock = sock
        self.holder = holder  # the client process, written into what it holds
        self.inbox = inbox
        self.out: deque[memoryview] = deque()  # replies the socket has not taken yet
        self.pending: deque[Any] = deque()  # requests read, waiting for the current one
        self.held: list[Held] = []  # takes from the head, held as reservations
        self.tops: list[int] = []  # pops from the top, held as records
        self.reserved: list[Held] = []  # reservations the last reply made (reserve)
        # takes the client confirmed whose delete failed (a full disk): tried again at
        # its next word, and never returned, since the client has them
        self.confirmed = Unwritten()
        self.parked: Optional[Parked] = None
        self.busy = False  # a call of it runs in the pool, or is parked
        self.writing = False  # registered for EVENT_WRITE
        self.bye = False  # it said goodbye: the client closed the connection on purpose

    def flush(self) -> bool:
        """Send what the socket takes now; True when everything went."""
        out = self.out
        while out:
            try:
                sent = self.sock.send(out[0])
            except (BlockingIOError, InterruptedError):
                return False
            if sent < len(out[0]):
                out[0] = out[0][sent:]
                return False
            out.popleft()
        return True


def serve_take(engine: HolderAPI, client: Client, method: str, a: dict[str, Any]) -> Any:
    """Serve a take so that what it takes is held for the client (``a``: the call's
    arguments by name): the reply as the client expects it."""
    lease = a.get("lease")
    if method == "take_first":
        if lease is not None:
            ns, entry = engine.take_first(**a, owner=client)
            client.reserved = [(ns, entry[0], entry[1], entry[4])]
            return [ns, entry]
        ns, entry = engine.take_first(**{**a, "lease": math.inf}, owner=client, held=True)
        return [ns, _hold(client, ns, [entry])[0]]
    n = a.get("n", 1)
    where = {"lane": a["lane"], "block": a["block"], "timeout": a["timeout"]}
    if method != "take_run":
        where["desc"] = a["desc"]
    if method == "take" and lease is not None:
        entries = engine.take(**a, owner=client)
        client.reserved = [(a["ns"], e[0], e[1], e[4]) for e in entries]
        return entries
    if a["from_tail"]:
        entries, client.tops = engine.hold_top(a["ns"], n, **where, holder=client.holder)
    else:
        entries = _hold(client, a["ns"], engine.take(a["ns"], n, **where, lease=math.inf,
                                                     owner=client, held=True))
    if method == "pop_one":
        return entries[0]
    if method == "take_run":
        return [[e[1] for e in entries], [[e[2], e[3]] for e in entries]]
    return entries


def _hold(client: Client, ns: bytes, entries: list[Entry]) -> list[Any]:
    """Note head takes as held; the client sees them as dequeued (attempts 0)."""
    client.held = [(ns, e[0], e[1], e[4]) for e in entries]
    return [[lane, seq, key, data, 0] for lane, seq, key, data, _ in entries]


def refuse(conn: socket.socket, why: str) -> None:
    """Answer an opener with an error, then close (what it sent is still unread: the
    reply waits for it to read all the same)."""
    try:
        conn.setblocking(False)
        conn.send(protocol.pack([1, "DiskQueueError", why]))
    except OSError:
        pass
    finally:
        conn.close()


def spare_fd() -> Optional[int]:
    """A descriptor kept in reserve to accept (and refuse) an opener when the process
    has none left."""
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


def same_user(conn: socket.socket) -> bool:
    """Refuse a peer of another user even if the socket's mode let it in (where the
    platform cannot tell who connected, the socket file's 0600 mode is the guard)."""
    try:
        return peercred.same_user(conn)[0]
    except OSError:
        return False


def settle(engine: HolderAPI, client: Client, put_back: bool) -> None:
    """The client's word on its last reply: let go of its takes, or return them."""
    client.confirmed.retry(engine)
    held, tops, reserved = client.held, client.tops, client.reserved
    if not (held or tops or reserved):
        return
    client.held, client.tops, client.reserved = [], [], []
    try:
        if put_back:
            engine.unreserve(held + reserved, client)
        elif held:
            client.confirmed.takes += confirm_takes(engine, held)
        if tops and put_back:
            engine.settle_tops(tops, put_back=True)
        elif tops:
            client.confirmed.tops += confirm_tops(engine, tops)
    except DiskQueueError as exc:
        log.debug("settling a client's takes: %s", exc)


class Unwritten:
    """Confirmed takes (``takes``) and pops from the top (``tops``) whose delete failed
    (not written: a full disk): tried again, and never returned, since the client has
    them (left held, the next holder would give them back)."""

    __slots__ = ("takes", "tops", "holders")

    def __init__(self) -> None:
        self.takes: list[Held] = []
        self.tops: list[int] = []
        # The client processes they are for, once gone: their notes of what they handed
        # out (engine/handed.py) are kept until these are written, for the next holder
        # should this one die first.
        self.holders: set[Holder] = set()

    def __bool__(self) -> bool:
        """Whether anything is left to write."""
        return bool(self.takes or self.tops)

    def retry(self, engine: HolderAPI) -> None:
        """Try the deletes again; what still fails stays."""
        if self.takes:
            self.takes = confirm_takes(engine, self.takes)
        if self.tops:
            self.tops = confirm_tops(engine, self.tops)
        if not self:
            self.holders.clear()

    def add(self, other: Unwritten) -> None:
        """Take over ``other``'s (a client's that left)."""
        self.takes += other.takes
        self.tops += other.tops
        self.holders |= other.holders


def confirm_takes(engine: HolderAPI, held: list[Held]) -> list[Held]:
    """Let go of confirmed takes; those whose delete failed (not written: a full disk),
    to try again. One cleared meanwhile (``NotReserved``) is let go."""
    try:
        engine.ack_many(held)
        return []
    except DiskQueueError:
        failed = []
        for one in held:
            try:
                engine.ack_many([one])
            except NotReserved:
                pass
            except DiskQueueError as exc:
                log.debug("confirming a client's take: %s", exc)
                failed.append(one)
        return failed


def confirm_tops(engine: HolderAPI, tops: list[int]) -> list[int]:
    """Let go of confirmed pops from the top; all of them again when their delete failed
    (not written: a full disk), to try again: left held, the next holder would push
    them back."""
    try:
        engine.settle_tops(tops, put_back=False)
        return []
    except DiskQueueError as exc:
        log.debug("confirming a client's pops: %s", exc)
        return tops


def let_go(engine: HolderAPI, client: Client, closing: bool) -> Unwritten:
    """A connection ended: what it held goes back, and its reservations unless a live
    client gave up on it (see :func:`_end_reservations`); but when the holder is
    closing, all stay on disk for the next one, which keeps them while the client
    lives: its "got it" may be on the way. Returns the client's confirmations that
    still cannot be written (a full disk), for the holder to write later."""
    if engine.closed or engine.forked or closing and client.holder is not None:
        return Unwritten()  # held items stay on disk, and the next open returns them
    client.confirmed.retry(engine)  # the client has these: never return them
    try:
        returned = engine.unreserve(client.held, client)
        returned += engine.settle_tops(client.tops, put_back=True)
        if not client.confirmed.takes:
            returned += _end_reservations(engine, client)
        # else confirmations that cannot be written yet (a full disk) must not come
        # back with them: its reservations come back when their leases end instead.
    except DiskQueueError as exc:
        log.debug("returning a client's items: %s", exc)
        return _left(client)
    if returned:
        log.info("returned %d items of a client that went away", returned)
    return _left(client)


def _left(client: Client) -> Unwritten:
    """The confirmations of a client that went away still to be written, named by it."""
    if client.confirmed and client.holder is not None:
        client.confirmed.holders.add(client.holder)
    return client.confirmed


def _end_reservations(engine: HolderAPI, client: Client) -> int:
    """The reservations of a connection that ended go back to the front when the client
    closed it (it said goodbye) or its process is gone. Else (a call gave up on it, say)
    they stay the live process's until it acks or nacks them on another connection,
    their lease ends or it dies; but those of its last reply, which it never confirmed,
    go back as if never made. Count the items returned."""
    if client.bye or client.holder is None or not holders.alive(client.holder):
        return engine.release_owner(client)
    returned = engine.unreserve(client.reserved, client)
    engine.keep_for(client, client.holder)
    return returned


def listen(path: str, sock_path: str) -> tuple[socket.socket, int]:
    """A listening socket at ``sock_path`` in ``path``, only for this user; and the
    socket file's inode, to tell later whether it is still ours."""
    mode = os.stat(path).st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise DiskQueueError(
            f"{path} is world-writable; other users could replace its socket. "
            f"Run `chmod o-w {path}` to share it between processes"
        )
    address, keep = protocol.socket_address(path)
    try:
        try:
            os.unlink(sock_path)  # left by an owner that died: we hold the lock
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(address)
            os.chmod(sock_path, 0o600)  # before listen(): nobody connects yet
            sock.listen(128)
            ino = os.stat(sock_path).st_ino
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return sock, ino
    finally:
        protocol.release_address(keep)
