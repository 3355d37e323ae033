"""Every byte of a returned ``sync=True`` call is fsynced, across LevelDB's log switches.

A child process runs ``sync=True`` calls under ``strace`` with a 64 KiB write buffer, so
LevelDB switches to a new log every few hundred calls. After each call returns it writes
a marker line; the trace then must show, at every marker, that every byte written to
every log file so far was fsynced (or the log was deleted, which LevelDB does only after
its records reached a table it fsynced). Before the fix a dequeue's delete went to the
old log, the empty sync write that followed went to the new one, and only the new one
was fsynced.

``strace`` must be installed (CI has it); the test is skipped where it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from collections import defaultdict

import pytest

try:
    from . import faults
except ImportError:
    import faults

MARK = "DQ-RETURNED"

CHILD = r"""
import os, sys
import diskqueue.engine.store
diskqueue.engine.store._WRITE_BUFFER = 64 * 1024  # LevelDB's smallest: a log switch every ~64 KiB
import diskqueue as dq

def returned():
    os.write(1, b"DQ-RETURNED\n")

q = dq.Queue(sys.argv[1], codec="raw", sync=True)
for round in range(int(sys.argv[2])):
    q.enqueue_many([b"v" * 100] * 301)  # a sync write of its own
    returned()
    for _ in range(300):
        q.dequeue()                     # a plain write, then Engine.sync()
        returned()
    item = q.reserve()
    returned()
    q.ack(item)
    returned()
q.close()
"""

# 12 write(5</dir/000003.log>, "..."..., 120) = 120   (strace -f -o: a pid first)
_PID = re.compile(r"^(?:\[pid\s+(\d+)\]|(\d+))\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+)")
_UNFINISHED = re.compile(r"^(.*) <unfinished \.\.\.>$")
_RESUMED = re.compile(r"^<\.\.\. \w+ resumed>(.*)$")
_FD_PATH = re.compile(r"^\d+<(.*?)(?: \(deleted\))?>")


def _calls(lines):
    """Complete syscalls in the order they returned: (name, args, result)."""
    pending: dict[str, str] = {}
    for line in lines:
        m = _PID.match(line)
        pid, line = (m.group(1) or m.group(2), m.group(3)) if m else ("", line)
        m = _UNFINISHED.match(line)
        if m:
            pending[pid] = m.group(1)
            continue
        m = _RESUMED.match(line)
        if m:
            line = pending.pop(pid, "") + m.group(1)
        m = _CALL.match(line)
        if m:
            yield m.group(1), m.group(2), int(m.group(3))


def unsynced_at_returns(trace: list[str]) -> tuple[int, list[str]]:
    """Count the markers, and list those at which some log held bytes never fsynced."""
    unsynced: dict[str, int] = defaultdict(int)
    markers = 0
    problems = []
    for name, args, result in _calls(trace):
        if result < 0:
            continue
        fd = _FD_PATH.match(args)
        path = fd.group(1) if fd else ""
        if name == "write" and MARK in args:
            markers += 1
            late = {p: n for p, n in unsynced.items() if n}
            if late:
                problems.append(f"return #{markers}: not fsynced: {late}")
        elif name == "write" and path.endswith(".log"):
            unsynced[path] += result
        elif name in ("fsync", "fdatasync") and path.endswith(".log"):
            unsynced[path] = 0
        elif name in ("unlink", "unlinkat"):
            gone = re.search(r'"([^"]+\.log)"', args)
            if gone:
                unsynced.pop(gone.group(1), None)
    return markers, problems


def traced(child: str, out: str, *args: str) -> tuple[list[str], int]:
    """Run the Python source ``child`` with ``args`` under strace (skipped when strace is
    missing); its trace lines, and how many LevelDB log files it wrote."""
    if shutil.which("strace") is None:
        pytest.skip("needs strace (CI installs it)")
    done = subprocess.run(
        ["strace", "-f", "-qq", "-y", "-s", "16", "-o", out,
         "-e", "trace=write,fsync,fdatasync,unlink,unlinkat",
         sys.executable, "-c", textwrap.dedent(child), *args],
        env=faults.child_env(), capture_output=True, text=True, timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out) as fh:
        trace = fh.read().splitlines()
    switches = {m for line in trace for m in re.findall(r"/(\d+)\.log", line)}
    return trace, len(switches)


@pytest.mark.timeout(300)
def test_every_returned_sync_call_was_fsynced_across_log_switches(tmp_path):
    rounds = 8
    trace, switches = traced(CHILD, str(tmp_path / "trace"), str(tmp_path / "q"),
                             str(rounds))
    assert switches >= 5, f"only {switches} log files: no log switch to test"
    markers, problems = unsynced_at_returns(trace)
    assert markers == rounds * 303
    assert not problems, f"{len(problems)} of {markers} sync=True calls returned with " \
        f"bytes not fsynced, e.g. {problems[:3]}"
