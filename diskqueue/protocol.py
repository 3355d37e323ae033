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
from typing import Any

import msgpack

from . import errors

SOCKET_NAME = "diskqueue.sock"
MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")
# sun_path holds 108 bytes on Linux and 104 on macOS, terminator included.
_SUN_PATH_MAX = 100


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
    """Reads frames from a socket, usually a whole frame per ``recv`` call."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def read(self) -> Any:
        buf = self._buf
        while True:
            if len(buf) >= 4:
                (size,) = _HEADER.unpack_from(buf)
                if size > MAX_FRAME:
                    raise ProtocolError(f"frame of {size} bytes is over the limit")
                end = 4 + size
                if len(buf) >= end:
                    body = bytes(buf[4:end])
                    del buf[:end]
                    return unpack(body)
            chunk = self._sock.recv(1 << 18)
            if not chunk:
                raise ConnectionError("peer closed the connection")
            buf += chunk


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
        if os.readlink(link) != directory:
            os.unlink(link)
            os.symlink(directory, link)
    except FileNotFoundError:
        os.symlink(directory, link)
    except OSError:
        os.unlink(link)
        os.symlink(directory, link)
    return os.path.join(link, SOCKET_NAME), None


def release_address(keep: Any) -> None:
    if isinstance(keep, int):
        try:
            os.close(keep)
        except OSError:
            pass
