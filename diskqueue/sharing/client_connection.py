"""A client's connection to a directory's owner, whose waits are bounded.

Sends and receives time out in the kernel (``SO_SNDTIMEO``/``SO_RCVTIMEO``) rather than
through Python's socket timeouts: those would make every receive poll first, which
defeats the reader's busy-polling of a reply that is microseconds away.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from typing import Optional

from . import protocol

_TIMEVAL = struct.Struct("@ll")
_ONE_SEND = 64 * 1024  # a request this small fits the socket's buffer: one sendall
# The kernel's receive time-out, at most: the reader counts the bound itself (see bound)
RECEIVE_SLICE = 0.1
BYE = protocol.pack("bye")  # closing this connection (no reply)


class Connection:
    """One connection to the owner; a thread has it to itself for the length of a call.

    Its sends and receives time out in the kernel (``SO_SNDTIMEO``/``SO_RCVTIMEO``), so
    the fast path pays no system call for the bound: only a change of bound does.
    """

    __slots__ = ("sock", "reader", "pid", "_wait")

    def __init__(self, sock: socket.socket, pid: Optional[int], send_bound: float) -> None:
        self.sock = sock
        self.reader = protocol.FrameReader(sock)
        self.pid = pid  # the owner's, as the kernel says
        self._wait = -1.0
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(send_bound))

    def bound(self, seconds: float) -> None:
        """Each receive gives up after ``seconds`` without data. The reader counts them,
        and the kernel times out after RECEIVE_SLICE at most: a signal makes Python
        start an interrupted receive again with the kernel's whole time-out, so with
        the whole bound there each signal would add up to the bound again."""
        self.reader.patience = seconds
        wait = min(seconds, RECEIVE_SLICE)
        if wait != self._wait:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(wait))
            self._wait = wait

    def send(self, data: bytes, within: float) -> None:
        """Send all of ``data`` within ``within`` seconds (a timeout is an OSError).

        Each blocking send may wait the whole send bound, so a message bigger than the
        socket's buffer is sent piece by piece against one deadline instead."""
        if len(data) <= _ONE_SEND:
            self.sock.sendall(data)
            return
        end = time.monotonic() + within
        view = memoryview(data)
        try:
            while view:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the owner took no more of the request")
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(left))
                view = view[self.sock.send(view):]
        finally:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(within))

    def close(self, goodbye: bool) -> None:
        """Close the socket, first telling the owner with ``goodbye``; never raises (a
        socket that already broke is closed all the same)."""
        try:
            if goodbye:
                self.sock.sendall(BYE)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def timeval(seconds: float) -> bytes:
    """``seconds`` as the ``struct timeval`` of a socket option (never 0: no bound)."""
    whole = int(seconds)
    return _TIMEVAL.pack(whole, max(1, int((seconds - whole) * 1e6)))


def timed_out(exc: OSError) -> bool:
    """Whether an error of a send or receive is its bound running out."""
    return isinstance(exc, (BlockingIOError, TimeoutError)) or exc.errno in (
        errno.EAGAIN, errno.EWOULDBLOCK)


