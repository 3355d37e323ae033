"""A client checks who serves the directory's socket before sending anything (issue 10,
item 1).

A group member who can write to a shared directory (2770), or anyone in a sticky
world-writable one (1777) before the holder made its socket, can put their own
listening socket at ``diskqueue.sock``. The victim's client must refuse it with a clear
error, and send it nothing. Real users and groups (tests/users.py), real sockets.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest
import users
from users import User

from diskqueue.sharing import peercred, protocol

# the fixtures this module uses, by name
two_users = users.two_users
shared_group = users.shared_group

HOLDER = r"""
import sys, time, diskqueue as dq
q = dq.Queue(sys.argv[1])
print("role", q.role, flush=True)
time.sleep(600)
"""

IMPOSTOR = r"""
import os, socket, sys
path = os.path.join(sys.argv[1], "diskqueue.sock")
try:
    os.unlink(path)  # the holder's socket, where the directory lets us
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o666)
server.listen(16)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.settimeout(3)
    got = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
            # a fake reply, as an impostor would give: "ok", and an item of its own
            conn.sendall(b"\x00\x00\x00\x0b" + b"\x92\x00\xa8evil-tok")
    except OSError:
        pass
    print("received", len(got), got[:200].hex(), flush=True)
"""

VICTIM_CLIENT = r"""
import sys, diskqueue as dq
try:
    q = dq.Queue(sys.argv[1], connect_timeout=3)
    q.enqueue("card 4111-1111-1111-1111")
    print("sent", q.role, q.dequeue().value, flush=True)
except dq.DiskQueueError as exc:
    print("refused", type(exc).__name__, exc, flush=True)
"""


@pytest.fixture
def shared_base() -> Iterator[str]:
    """A directory every local user can traverse (a test's tmp_path is private to root)."""
    base = tempfile.mkdtemp(prefix="dq-peers-")
    os.chmod(base, 0o711)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _line(proc, timeout: float = 30) -> str:
    """The next line of a child's stdout, or fail with its stderr."""
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    if not line and time.monotonic() < deadline:
        raise AssertionError(f"child ended: {proc.stderr.read()[-2000:]}")
    return line.strip()


def _impostor_report(proc) -> list[str]:
    proc.kill()
    out, _ = proc.communicate(timeout=30)
    return [line for line in out.splitlines() if line.startswith("received")]


def _attack(victim: User, attacker: User, gid: int, qdir: str, plant_first: bool) -> None:
    """The attacker's socket takes the place of the victim holder's; a victim client
    then opens the queue. It must refuse, and the impostor must receive nothing."""
    procs = []
    try:
        if plant_first:  # sticky directory: the attacker can only get there first
            impostor = attacker.popen_py(IMPOSTOR, qdir, groups=(gid,))
            procs.append(impostor)
            assert _line(impostor) == "listening"
        holder = victim.popen_py(HOLDER, qdir, groups=(gid,))
        procs.append(holder)
        assert _line(holder) == "role owner"
        if not plant_first:
            impostor = attacker.popen_py(IMPOSTOR, qdir, groups=(gid,))
            procs.append(impostor)
            assert _line(impostor) == "listening"
        sock_path = os.path.join(qdir, protocol.SOCKET_NAME)
        assert os.stat(sock_path).st_uid == attacker.uid
        done = victim.run_py(VICTIM_CLIENT, qdir, groups=(gid,))
        assert done.stdout.startswith("refused DiskQueueError"), done.stdout + done.stderr
        assert f"uid {attacker.uid}" in done.stdout and "not by this user" in done.stdout
        received = _impostor_report(impostor)
        assert all(line.split()[1] == "0" for line in received), received
        assert "card" not in "".join(received)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)


def test_a_group_member_cannot_impersonate_the_holder(two_users, shared_group, shared_base):
    victim, attacker = two_users
    qdir = os.path.join(shared_base, "q")
    os.mkdir(qdir)
    os.chown(qdir, victim.uid, shared_group)
    os.chmod(qdir, 0o2770)
    _attack(victim, attacker, shared_group, qdir, plant_first=False)


def test_a_socket_planted_in_a_sticky_directory_is_refused(two_users, shared_group,
                                                            shared_base):
    victim, attacker = two_users
    qdir = os.path.join(shared_base, "q")
    os.mkdir(qdir)  # owned by root, like /tmp: nobody else may remove another's files
    os.chmod(qdir, 0o1777)
    _attack(victim, attacker, shared_group, qdir, plant_first=True)


def test_peer_of_names_this_process_across_a_socket_pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        peer = peercred.peer_of(a)
        assert peer is not None, "no peer credentials on this platform"
        assert peer.uid == os.geteuid()
        assert peer.pid in (os.getpid(), None)
        assert peercred.same_user(a) == (True, peer)
