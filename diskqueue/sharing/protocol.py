"""The wire format between a directory's owner and its clients.

A message is a msgpack body sent as one or more *chunks*; each chunk is a 4-byte
big-endian header and up to :data:`CHUNK` bytes of the body. The header's top bit says
that more chunks of the same message follow, its other 31 bits are the chunk's length,
so a message of any size (a ``list(q)`` of gigabytes) travels, and a reader never
needs more than a chunk's worth of trust in a header: memory for a body is taken as
its bytes arrive, never because a header announced them. The holder's reader
(:class:`diskqueue.connection.Inbox`) also bounds one message (the rest is read and
dropped, and :class:`TooLarge` says so, leaving the connection usable) and charges
partly received messages to a :class:`Budget` shared by all its connections.

A request is ``[method, args, kwargs]`` or ``[method, args, kwargs, deadline]``; a
reply is ``[0, result]`` (a pop from the top: ``[0, result, ids of the records holding
it]``) or ``[1, error class name, message]``; control words (``"got it"``, ``"put
back"``, ``"bye"``) are plain strings. A malformed chunk ends that
connection only.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, Optional, TypeVar

import msgpack

from .. import errors

SOCKET_NAME = "diskqueue.sock"
CHUNK = 16 * 1024 * 1024  # the largest piece of a message behind one header
_MORE = 0x80000000  # header bit: another chunk of this message follows
_HEADER = struct.Struct(">I")
_PIECE = 256 * 1024  # a large chunk is received this much at a time, at most
# sun_path holds 108 bytes on Linux and 104 on macOS, terminator included.
_SUN_PATH_MAX = 100
POLLS = 128  # non-blocking reads before a read sleeps (about 100 µs)
SHORT_SLEEP = 0.0005  # a sleep this short says polling a little longer would have paid
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", None)
LOAD_EVERY = 1.0  # seconds between looks at the load average
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
    os.cpu_count() or 1)
_load = [-LOAD_EVERY, True]  # when the load was looked at last; whether polling pays


def spinning_pays() -> bool:
    """Whether polling a socket for a peer's next message can pay now: only while a
    core is free for the peer to answer on (the 1-minute load average is under the
    CPUs this process may run on). On busy cores a poller takes the time its peer
    needs, and both wait longer: a client's calls to a holder on 2 busy cores ran 5-10x
    slower, with 4-6x the CPU per call on each side, than with both ends sleeping."""
    now = time.monotonic()
    if now - _load[0] >= LOAD_EVERY:
        _load[0] = now
        try:
            _load[1] = os.getloadavg()[0] < _CPUS
        except OSError:  # no load average here: poll as before
            _load[1] = True
    return bool(_load[1])


T = TypeVar("T")


class ProtocolError(Exception):
    """A peer sent something that is not a frame of ours."""


class TooLarge(Exception):
    """A whole message was read past and dropped: it was over the reader's limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"a request of at least {size} bytes is over the holder's limit of {limit} "
            "bytes; send it in smaller batches"
        )


def pack(obj: Any) -> bytes:
    """``obj`` as a message ready to send: one chunk, or several when it is large."""
    body = msgpack.packb(obj, use_bin_type=True)
    if len(body) <= CHUNK:
        return _HEADER.pack(len(body)) + body
    view = memoryview(body)
    parts: list[bytes | memoryview] = []
    for at in range(0, len(body), CHUNK):
        piece = view[at : at + CHUNK]
        more = _MORE if at + CHUNK < len(body) else 0
        parts += (_HEADER.pack(len(piece) | more), piece)
    return b"".join(parts)


def unpack(body: bytes | bytearray | memoryview) -> Any:
    """The object a message body holds; ``ProtocolError`` when it is not valid msgpack."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:
        raise ProtocolError(f"malformed frame: {exc}") from exc


class Budget:
    """Bytes of partly received large messages, shared by the readers of one holder:
    what many clients sending at once can make it keep. A reader that would go over it
    fails (its connection is dropped; a client reconnects and sends again)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        """Charge ``n`` bytes; ``ProtocolError`` (nothing charged) when that would go over
        the limit."""
        with self._lock:
            if self.used + n > self.limit:
                raise ProtocolError(f"the holder keeps {self.used} bytes of requests already")
            self.used += n

    def give(self, n: int) -> None:
        """Hand back ``n`` bytes taken before (the message completed or was dropped)."""
        with self._lock:
            self.used -= n


class FrameReader:
    """Reads messages from a blocking socket (a client's side); small chunks go through
    one reused buffer (no allocation per ``recv``), large ones are received piece by
    piece, so memory follows the bytes that arrived, not what a header announced.

    A read first polls the socket for a while before it sleeps in ``recv``: waking a
    sleeping process costs more than a round trip between two running ones (on small
    virtual machines, several times more), and the answer to a call, or a busy client's
    next call, is usually a few microseconds away. The polling adapts: it stops once
    it keeps failing (an idle peer) and resumes when a sleep turns out short. While
    the machine's cores are all busy (:func:`spinning_pays`), a read just sleeps.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray(1 << 16)
        self._start = self._end = 0  # unread bytes are _buf[_start:_end]
        self._polls = POLLS
        # Seconds a receive may wait for data, counted here (None: the socket's own
        # time-out alone). The socket then times out in short slices (see
        # client_connection.Connection.bound), because Python repeats a receive a
        # signal interrupted with the kernel's whole time-out again: each signal would
        # stretch the wait by as much again.
        self.patience: Optional[float] = None

    def read(self) -> Any:
        """The next whole message, waiting for it.

        Raises ``ProtocolError`` for a malformed message, ``ConnectionError`` when the peer
        closed the socket, and the socket's ``OSError`` (a timeout among them) as it comes.
        """
        size, more = self._header()
        if not more and size <= len(self._buf) - 4:  # the common case: one small chunk
            self._fill(4 + size)
            start = self._start + 4
            body = bytes(self._buf[start : start + size])
            self._consume(4 + size)
            return unpack(body)
        parts: list[bytes] = []
        while True:
            self._consume(4)
            self._chunk(size, parts)
            if not more:
                return unpack(b"".join(parts))
            size, more = self._header()

    def _header(self) -> tuple[int, bool]:
        self._fill(4)
        (word,) = _HEADER.unpack_from(self._buf, self._start)
        size = word & ~_MORE
        if size > CHUNK:
            raise ProtocolError(f"a chunk of {size} bytes is over the {CHUNK}-byte limit")
        return size, bool(word & _MORE)

    def _chunk(self, size: int, parts: list[bytes]) -> None:
        """Receive a chunk's body (its header consumed) into ``parts``."""
        buffered = min(size, self._end - self._start)
        if buffered:
            parts.append(bytes(self._buf[self._start : self._start + buffered]))
            self._consume(buffered)
        left = size - buffered
        while left:
            piece = self._sleeping(functools.partial(self._sock.recv, min(left, _PIECE)))
            if not piece:
                raise ConnectionError("peer closed the connection")
            parts.append(piece)
            left -= len(piece)

    def _consume(self, n: int) -> None:
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0

    def _fill(self, n: int) -> None:
        """Have at least ``n`` (at most the buffer's size) unread bytes in the buffer."""
        while self._end - self._start < n:
            if len(self._buf) - self._start < n:  # move the unread bytes to the front
                unread = self._buf[self._start : self._end]
                self._buf[: len(unread)] = unread
                self._start, self._end = 0, len(unread)
            got = self._receive(memoryview(self._buf)[self._end :])
            if not got:
                raise ConnectionError("peer closed the connection")
            self._end += got

    def _receive(self, view: memoryview) -> int:
        recv_into = self._sock.recv_into
        if _DONTWAIT is None or not spinning_pays():  # no flag here, or no core free
            return self._sleeping(functools.partial(recv_into, view))
        for _ in range(self._polls):
            try:
                n = recv_into(view, 0, _DONTWAIT)
            except BlockingIOError:
                continue
            self._polls = POLLS
            return n
        started = time.monotonic()
        n = self._sleeping(functools.partial(recv_into, view))
        self._polls = POLLS if time.monotonic() - started < SHORT_SLEEP else self._polls // 2
        return n

    def _sleeping(self, receive: Callable[[], T]) -> T:
        """A blocking receive, tried again each time the socket times out until
        ``patience`` seconds have passed without data (then its timeout is raised)."""
        if self.patience is None:
            return receive()
        end = time.monotonic() + self.patience
        while True:
            try:
                return receive()
            except BlockingIOError:
                if time.monotonic() >= end:
                    raise


def error_reply(exc: BaseException) -> list[Any]:
    """The reply that carries ``exc`` to a client, where :func:`raise_reply` raises it."""
    return [1, type(exc).__name__, str(exc)]


def raise_reply(name: str, message: str) -> None:
    """Raise, on the client side, the error the owner raised."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.DiskQueueError):
        if cls is errors.Locked:
            raise errors.DiskQueueError(message)
        if cls is errors.Corrupted:
            exc = cls.__new__(cls)
            Exception.__init__(exc, message)
            raise exc
        raise cls(message)
    builtin = {"TypeError": TypeError, "ValueError": ValueError, "KeyError": KeyError}
    raise builtin.get(name, errors.DiskQueueError)(message)


def socket_address(directory: str) -> tuple[str, Any]:
    """A path short enough for ``sun_path`` that names the socket in ``directory``.

    Long directory paths are reached through ``/proc/self/fd`` on Linux, or through a
    short symlink in the temp directory elsewhere. Returns the address and what must
    be kept open (or removed) while it is in use.
    """
    full = os.path.join(directory, SOCKET_NAME)
    if len(full.encode()) <= _SUN_PATH_MAX:
        return full, None
    if sys.platform.startswith("linux"):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        return f"/proc/self/fd/{fd}/{SOCKET_NAME}", fd
    digest = hashlib.sha1(directory.encode()).hexdigest()[:16]
    link = os.path.join(tempfile.gettempdir(), f"dq-{os.getuid()}-{digest}")
    try:
        if os.lstat(link).st_uid != os.getuid():
            raise errors.DiskQueueError(
                f"{link} belongs to another user; remove it to reach {directory}"
            )
        if os.readlink(link) != directory:
            os.unlink(link)
            os.symlink(directory, link)
    except FileNotFoundError:
        os.symlink(directory, link)
    return os.path.join(link, SOCKET_NAME), None


def release_address(keep: Any) -> None:
    """Free what :func:`socket_address` said to keep while the address is in use; never
    raises."""
    if isinstance(keep, int):
        try:
            os.close(keep)
        except OSError:
            pass
