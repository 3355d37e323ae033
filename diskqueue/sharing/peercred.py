"""Who is at the other end of a connected Unix socket, as the kernel tells it.

Both sides of a shared directory use this: a client refuses to send anything to a
socket served by another user (someone who could write to the directory may have
put their own socket in its place), and the holder refuses clients of another user.
The kernel records the credentials when the socket connects (or listens), so the
peer cannot lie about them.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from typing import NamedTuple, Optional

# Linux: struct ucred {pid_t pid; uid_t uid; gid_t gid;}
_UCRED = struct.Struct("3i")
# macOS and the BSDs: struct xucred {u_int cr_version; uid_t cr_uid; short cr_ngroups; ...}
_XUCRED_HEAD = struct.Struct("=2I")
_XUCRED_SIZE = 76  # cr_version, cr_uid, cr_ngroups (padded), cr_groups[16]
_SOL_LOCAL = 0
_LOCAL_PEERCRED = 0x001
_LOCAL_PEERPID = 0x002  # macOS only


class Peer(NamedTuple):
    """The peer's user id, and its pid where the platform says (else None)."""

    uid: int
    pid: Optional[int]


def peer_of(sock: socket.socket) -> Optional[Peer]:
    """The credentials of the process at the other end of ``sock``, or None where this
    platform cannot tell (then the caller falls back on the socket file's owner)."""
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    if so_peercred is not None:
        pid, uid, _gid = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, so_peercred, _UCRED.size))
        return Peer(uid, pid or None)
    if sys.platform == "darwin" or "bsd" in sys.platform:
        try:
            raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED_SIZE)
        except OSError:
            return None
        _version, uid = _XUCRED_HEAD.unpack_from(raw)
        return Peer(uid, _peer_pid(sock))
    return None


def _peer_pid(sock: socket.socket) -> Optional[int]:
    try:
        raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4)
    except OSError:
        return None
    return int.from_bytes(raw, sys.byteorder) or None


def same_user(sock: socket.socket,
              fallback_path: Optional[str] = None) -> tuple[bool, Optional[Peer]]:
    """Whether the peer runs as this process's user, and who it is.

    Where the platform has no peer credentials, the owner of the socket file at
    ``fallback_path`` stands in (weaker: it says who made the file, not who serves it);
    with neither, the peer is trusted, as nothing better can be known.
    """
    peer = peer_of(sock)
    if peer is not None:
        return peer.uid == os.geteuid(), peer
    if fallback_path is not None:
        try:
            owner = os.lstat(fallback_path).st_uid
        except OSError:
            return False, None
        return owner == os.geteuid(), Peer(owner, None)
    return True, None
