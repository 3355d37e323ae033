"""The wire format between a directory's owner and its clients.

A frame is a 4-byte big-endian length and a msgpack body. A request is
``[method, args]``; a reply is ``[0, result]`` or ``[1, error class name, message]``.
Frames are bounded: an oversized or malformed frame ends that connection only.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import sys
import tempfile
import time
from typing import Any

import msgpack

from . import errors

SOCKET_NAME = "diskqueue.sock"
MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")
# sun_path holds 108 bytes on Linux and 104 on macOS, terminator included.
_SUN_PATH_MAX = 100
POLLS = 128  # non-blocking reads before a read sleeps (about 100 µs)
SHORT_SLEEP = 0.0005  # a sleep this short says polling a little longer would have paid
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", None)


class ProtocolError(Exception):
    """A peer sent something that is not a frame of ours."""


def pack(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise errors.DiskQueueError(
            f"a request of {len(body)} bytes is over the {MAX_FRAME}-byte frame limit; "
            "send it in smaller batches"
        )
    return _HEADER.pack(len(body)) + body


def unpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:
        raise ProtocolError(f"malformed frame: {exc}") from exc


class FrameReader:
    """Reads frames from a socket into one reused buffer (no allocation per ``recv``).

    A read first polls the socket for a while before it sleeps in ``recv``: waking a
    sleeping process costs more than a round trip between two running ones (on small
    virtual machines, several times more), and the answer to a call, or a busy client's
    next call, is usually a few microseconds away. The polling adapts: it stops once
    it keeps failing (an idle peer) and resumes when a sleep turns out short.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray(1 << 16)
        self._start = self._end = 0  # unread bytes are _buf[_start:_end]
        self._polls = POLLS

    def read(self) -> Any:
        while True:
            avail = self._end - self._start
            if avail >= 4:
                (size,) = _HEADER.unpack_from(self._buf, self._start)
                if size > MAX_FRAME:
                    raise ProtocolError(f"frame of {size} bytes is over the limit")
                if avail >= 4 + size:
                    body = bytes(self._buf[self._start + 4 : self._start + 4 + size])
                    self._start += 4 + size
                    if self._start == self._end:
                        self._start = self._end = 0
                    return unpack(body)
                self._make_room(4 + size)
            else:
                self._make_room(4)
            n = self._receive(memoryview(self._buf)[self._end :])
            if not n:
                raise ConnectionError("peer closed the connection")
            self._end += n

    def _receive(self, view: memoryview) -> int:
        recv_into = self._sock.recv_into
        if _DONTWAIT is None:  # no non-blocking flag on this platform: just sleep
            return recv_into(view)
        for _ in range(self._polls):
            try:
                n = recv_into(view, 0, _DONTWAIT)
            except BlockingIOError:
                continue
            self._polls = POLLS
            return n
        started = time.monotonic()
        n = recv_into(view)
        self._polls = POLLS if time.monotonic() - started < SHORT_SLEEP else self._polls // 2
        return n

    def _make_room(self, frame: int) -> None:
        """Keep room after the unread bytes for a whole frame of ``frame`` bytes."""
        if len(self._buf) - self._start >= frame and self._end < len(self._buf):
            return
        unread = self._buf[self._start : self._end]
        if len(self._buf) < frame:
            self._buf = bytearray(max(frame, 2 * len(self._buf)))
        self._buf[: len(unread)] = unread
        self._start, self._end = 0, len(unread)


def error_reply(exc: BaseException) -> list[Any]:
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
    if isinstance(keep, int):
        try:
            os.close(keep)
        except OSError:
            pass
