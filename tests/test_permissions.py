"""Who can read and write a queue: directory and file modes, planted links, read-only
directories. Where another user matters, a real throwaway user does it (tests/users.py:
root creates it and drops to it with setpriv; skipped when not root)."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator

import pytest

import diskqueue as dq

try:
    from . import faults
    from .users import User, other_user, shared_group, two_users  # noqa: F401
except ImportError:
    import faults
    from users import User, other_user, shared_group, two_users  # noqa: F401

SECRET = "card 4111-1111-1111-1111"


def _mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _file_modes(path: str) -> dict[str, int]:
    return {name: _mode(os.path.join(path, name)) for name in os.listdir(path)
            if stat.S_ISREG(os.lstat(os.path.join(path, name)).st_mode)}


@pytest.fixture
def open_base() -> Iterator[str]:
    """A directory every user can enter (pytest's own tmp_path is 0700 for root's use),
    so that only the queue's own modes decide what another user can reach."""
    base = tempfile.mkdtemp(prefix="dq-perm-")
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        subprocess.run(["rm", "-rf", base], check=False)


UMASK_CHILD = r"""
import json, os, sys
os.umask(int(sys.argv[2], 8))
import diskqueue as dq
q = dq.Queue(sys.argv[1], **json.loads(sys.argv[3]))
q.enqueue_many(["secret"] * 20_000)  # enough for LevelDB to flush tables and switch logs
for _ in range(10_000):
    q.dequeue()
q.close()
"""


@pytest.mark.parametrize("umask", ["000", "022"])
def test_a_new_directory_is_private_whatever_the_umask(tmp_path, umask):
    path = str(tmp_path / "a" / "q")  # a missing parent is made as mkdir -p would
    done = faults.run_py(UMASK_CHILD, path, umask, "{}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _mode(path) == 0o700
    modes = _file_modes(path)
    assert modes, "no files in the directory"
    wide = {name: oct(m) for name, m in modes.items() if m & 0o077}
    assert not wide, f"files readable beyond the owner under umask {umask}: {wide}"


def test_mode_shares_the_directory_with_the_group_on_purpose(tmp_path):
    path = str(tmp_path / "q")
    done = faults.run_py(UMASK_CHILD, path, "022", '{"mode": 504}')  # 0o770
    assert done.returncode == 0, done.stderr[-3000:]
    assert _mode(path) == 0o770
    modes = _file_modes(path)
    assert all(m & 0o007 == 0 for m in modes.values()), modes
    assert any(m & 0o060 == 0o060 for m in modes.values()), modes


@pytest.mark.parametrize("mode", [0o600, 0o777, 0o4700, "0o700", True])
def test_a_bad_mode_is_refused_before_anything_is_created(tmp_path, mode):
    path = tmp_path / "q"
    with pytest.raises((TypeError, ValueError), match="mode"):
        dq.Queue(path, mode=mode)
    assert not path.exists()


def test_opening_a_directory_others_can_read_warns_once(tmp_path):
    path = str(tmp_path / "q")
    os.mkdir(path)
    os.chmod(path, 0o755)
    with pytest.warns(dq.SharedDirectoryWarning, match="other users"):
        dq.Queue(path).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dq.Queue(path).close()  # once per directory and process
        # a directory shared on purpose with mode= does not warn
        shared = str(tmp_path / "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o770)
        dq.PriorityQueue(shared, mode=0o770).close()
    assert _mode(path) == 0o755  # a warning, not a chmod behind the owner's back


def test_another_user_cannot_read_an_item_from_the_files(open_base, other_user: User):
    old = os.umask(0o022)
    try:
        path = os.path.join(open_base, "q")
        with dq.Queue(path) as q:
            q.enqueue(SECRET)
            log = [n for n in os.listdir(path) if n.endswith(".log")]
            assert log
            attempt = other_user.run_py(
                "import os, sys\n"
                "path = sys.argv[1]\n"
                "found = []\n"
                "try:\n"
                "    names = os.listdir(path)\n"
                "except PermissionError:\n"
                "    names = [sys.argv[2]]\n"
                "for name in names:\n"
                "    try:\n"
                "        with open(os.path.join(path, name), 'rb') as fh:\n"
                "            found.append(fh.read())\n"
                "    except OSError:\n"
                "        pass\n"
                "print(any(b'4111-1111' in data for data in found))\n",
                path, log[0],
            )
            assert attempt.returncode == 0, attempt.stderr
            assert attempt.stdout.strip() == "False", "another user read the item"
    finally:
        os.umask(old)


VICTIM = r"""
import sys
import diskqueue as dq
try:
    with dq.Queue(sys.argv[1]) as q:
        q.enqueue("hello")
    print("opened")
except dq.DiskQueueError as exc:
    print("refused:", exc)
"""


def test_a_link_planted_by_a_group_member_is_never_followed(open_base, two_users, shared_group):
    victim, attacker = two_users
    notes = os.path.join(open_base, "notes.txt")
    with open(notes, "w") as fh:
        fh.write("my notes\n")
    os.chown(notes, victim.uid, victim.gid)
    os.chmod(notes, 0o600)
    shared = os.path.join(open_base, "shared")
    os.mkdir(shared)
    os.chown(shared, victim.uid, shared_group)
    os.chmod(shared, 0o2770)
    # the attacker prepares the queue directory the victim is about to use
    made = attacker.run_py(
        "import os, sys\n"
        "q = os.path.join(sys.argv[1], 'q')\n"
        "os.mkdir(q)\n"
        "os.chmod(q, 0o2770)\n"
        "os.symlink(sys.argv[2], os.path.join(q, 'diskqueue.pid.tmp'))\n",
        shared, notes, groups=(shared_group,),
    )
    assert made.returncode == 0, made.stderr
    ran = victim.run_py(VICTIM, os.path.join(shared, "q"), groups=(shared_group,))
    assert ran.returncode == 0, ran.stderr
    with open(notes) as fh:
        assert fh.read() == "my notes\n", "the victim's file was overwritten through the link"
    assert ran.stdout.startswith("refused:") and "symbolic link" in ran.stdout, ran.stdout
    assert "diskqueue.pid.tmp" in ran.stdout


def test_a_file_of_a_third_user_in_a_private_directory_is_refused(open_base, two_users):
    """Only the owner (and root) can write a 0700 directory: a file of anybody else was
    planted while it was open to others, and LevelDB must not trust it."""
    victim, stranger = two_users
    path = os.path.join(open_base, "q")
    os.mkdir(path)
    with open(os.path.join(path, "CURRENT"), "w") as fh:
        fh.write("MANIFEST-000099\n")
    os.chown(os.path.join(path, "CURRENT"), stranger.uid, stranger.gid)
    os.chown(path, victim.uid, victim.gid)
    os.chmod(path, 0o700)
    ran = victim.run_py(VICTIM, path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("refused:"), ran.stdout
    assert f"belongs to user {stranger.uid}" in ran.stdout and "CURRENT" in ran.stdout
    with open(os.path.join(path, "CURRENT")) as fh:
        assert fh.read() == "MANIFEST-000099\n"


def test_the_pid_file_replaces_a_planted_link_and_never_writes_through_it(tmp_path):
    """A link planted where the pid file goes after the open's check (or under the old
    temporary name) is replaced by the rename, never written through."""
    path = str(tmp_path / "q")
    target = tmp_path / "target.txt"
    target.write_text("keep me\n")
    with dq.Queue(path) as q:
        pid_file = os.path.join(path, "diskqueue.pid")
        os.unlink(pid_file)
        os.symlink(target, pid_file)
        q._engine._store._write_pid()
        assert not os.path.islink(pid_file)
        assert open(pid_file).read() == str(os.getpid())
    assert target.read_text() == "keep me\n"
    assert not [n for n in os.listdir(path) if n.endswith(".tmp")]


READ_ONLY = r"""
import os, sys
import diskqueue as dq
from diskqueue.cli import main as diskq
path = sys.argv[1]
with dq.Queue(path) as q:
    q.enqueue_many(["a", "b", "c"])
os.chmod(path, 0o500)
try:
    dq.Queue(path)
except dq.PermissionDenied as exc:
    print("open:", type(exc).__name__, isinstance(exc, PermissionError), exc)
except dq.DiskQueueError as exc:
    print("open: wrong error", type(exc).__name__, exc)
else:
    print("open: no error")
code = diskq(["repair", path])
print("repair exit", code)
os.chmod(path, 0o700)
with dq.Queue(path) as q:
    print("items", [item.value for item in q])
"""


def test_a_read_only_directory_says_permission_denied_not_corrupted(open_base, other_user):
    os.chown(open_base, other_user.uid, other_user.gid)
    path = os.path.join(open_base, "q")
    ran = other_user.run_py(READ_ONLY, path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    out = ran.stdout + ran.stderr
    first = ran.stdout.splitlines()[0]
    assert first.startswith("open: PermissionDenied True"), out
    assert "permission denied" in first and path in first
    assert "Corrupted" not in out and "is corrupted" not in out, out
    assert "do not run diskq repair" in first
    assert "repair exit 0" not in out, out
    assert "permission denied" in ran.stderr, ran.stderr
    assert "items ['a', 'b', 'c']" in ran.stdout, out
