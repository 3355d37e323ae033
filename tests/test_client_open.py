"""Many processes opening one new directory at the same instant (issue 9, item 7).

Each must end up as the owner or a client of it; none may get ``Locked`` while the
holder is alive. Real processes, released together by closing a pipe they all wait on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import faults
import pytest
from test_sharing import holding

import diskqueue as dq

OPENER = r"""
import os, sys, diskqueue as dq
path, gate, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.read(gate, 1)  # every opener waits here until the test closes the pipe
try:
    q = getattr(dq, kind)(path)
except dq.DiskQueueError as exc:
    print("error", type(exc).__name__, exc, flush=True)
    sys.exit(1)
if kind == "Stack":
    q.push(os.getpid())
else:
    q.enqueue(os.getpid())
print("role", q.role, flush=True)
sys.stdin.read()  # stay open (the owner must stay alive) until the test is done
"""


def _open_at_once(path: str, n: int, kind: str) -> list[str]:
    """Start ``n`` openers of ``path``, release them together, return one line each."""
    gate_r, gate_w = os.pipe()
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(OPENER), path, str(gate_r), kind],
                env=faults.child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, pass_fds=(gate_r,), cwd=faults.REPO_ROOT,
            ))
        os.close(gate_r)
        gate_r = -1
        os.close(gate_w)  # EOF for every reader at once: they all start opening now
        gate_w = -1
        lines = []
        for proc in procs:
            assert proc.stdout is not None
            lines.append(proc.stdout.readline().strip())
        return lines
    finally:
        for fd in (gate_r, gate_w):
            if fd >= 0:
                os.close(fd)
        for proc in procs:
            try:
                assert proc.stdin is not None
                proc.stdin.close()
            except OSError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("kind", ["Queue", "Stack"])
def test_many_processes_opening_a_new_directory_at_once_all_get_in(tmp_path, kind):
    for round_ in range(4):
        n = 8 + 4 * (round_ % 3)
        path = str(tmp_path / f"q{round_}")
        lines = _open_at_once(path, n, kind)
        assert all(line.startswith("role ") for line in lines), lines
        roles = sorted(line.split()[1] for line in lines)
        assert roles.count("owner") >= 1, roles
        # every opener's item landed in the one directory
        with getattr(dq, kind)(path) as q:
            assert len(q) == n


def test_a_holder_that_does_not_serve_is_named_with_the_reason(tmp_path):
    """A world-writable directory (no sticky bit) is not served: an opener gets Locked
    after connect_timeout, and the message says what to do."""
    path = str(tmp_path / "q")
    os.makedirs(path)
    os.chmod(path, 0o777)
    with holding(path) as holder:
        with pytest.raises(dq.Locked) as caught, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a directory open to all may also warn
            dq.Queue(path, connect_timeout=1)
        assert caught.value.pid == holder.proc.pid
        assert "chmod o-w" in str(caught.value)
