"""The lock on a directory survives being let go of in part, as a signal handler's
exception leaves it (``tests/test_signal_in_close.py`` interrupts real closes and opens;
these put the lock in each state such an exception can leave it in, one at a time)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import faults
import pytest

import diskqueue as dq
from diskqueue.engine import dirlock


class Owner:
    """Stands for the store or repair that takes a lock."""


def _other_process_can_take(path: str) -> bool:
    code = ("import sys, diskqueue as dq\n"
            "q = dq.Queue(sys.argv[1], connect_timeout=1)\n"
            "print(q.role); q.close()\n")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                          env=faults.child_env(), timeout=60)
    return done.stdout.strip() == "owner"


def test_a_lock_is_this_process_s_until_let_go(tmp_path):
    path = str(tmp_path / "q")
    os.mkdir(path, 0o700)
    owner = Owner()
    lock = dirlock.take(path, owner)
    with pytest.raises(dq.Locked, match="this process"):
        dirlock.take(path, Owner())
    assert not _other_process_can_take(path)
    lock.let_go()
    assert lock.released
    lock.let_go()  # again: nothing left to do
    assert _other_process_can_take(path)


def test_a_lock_whose_owner_is_gone_is_let_go_by_the_next_open(tmp_path):
    """An open, or its let go, that an exception ended leaves the lock with no owner."""
    path = str(tmp_path / "q")
    os.mkdir(path, 0o700)
    owner = Owner()
    lock = dirlock.take(path, owner)
    del owner
    gc.collect()
    assert not lock.released
    with dq.Queue(path) as q:
        assert q.role == "owner"
        q.enqueue("a")
    assert lock.released
    assert _other_process_can_take(path)


def test_a_descriptor_closed_but_not_forgotten_is_not_closed_again(tmp_path):
    """Letting go that ended between the close and the forgetting: doing it again must
    not close whatever file reused the descriptor's number since."""
    path = str(tmp_path / "q")
    os.mkdir(path, 0o700)
    owner = Owner()
    lock = dirlock.take(path, owner)
    other = os.open(os.devnull, os.O_RDONLY)
    try:
        # The lock's descriptor closed (what let_go did before the exception), and its
        # number reused by another file:
        reused = os.dup2(other, lock._fd)
        lock.let_go()
        assert lock.released
        os.fstat(reused)  # still open
    finally:
        os.close(other)
        os.close(reused)
    assert _other_process_can_take(path)
