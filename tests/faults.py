"""Shared helpers for the fault tests: child processes, SIGKILL, file damage, disk use.

Children run the package from this repository: ``PYTHONPATH`` is set to the repo root
(computed from this file's location) and the interpreter is ``sys.executable``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parent.parent)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child that must import ``diskqueue`` from this repo."""
    env = dict(os.environ)
    env.update(extra or {})
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + old if old else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# Code for a child whose calls a timer interrupts: SIGALRM raises KeyboardInterrupt in
# the call the child runs through ``armed_call``, one exception per call, as one SIGINT
# or SIGTERM gives; ``acked``, ``got``, ``maybe_put`` and ``counts`` account for them.
ONE_INTERRUPT_PER_CALL = """
import signal

armed = False
acked, got, maybe_put = set(), [], set()
counts = {"interrupted": 0, "taken when interrupted": 0, "corrupted": 0}

def handler(signum, frame):
    global armed
    if armed:
        armed = False
        raise KeyboardInterrupt

# The timer's exception, or what CPython's threading made of it: one raised as
# Condition.wait() takes its lock back leaves the lock unlocked, and the ``with`` around
# the wait (Thread.start() has one) then fails with RuntimeError("release unlocked lock").
def interrupt(exc):
    return isinstance(exc, KeyboardInterrupt) or (
        isinstance(exc, RuntimeError) and isinstance(exc.__context__, KeyboardInterrupt))

# Run call (the push of n, or a take that returns a list) with the timer armed and
# account for it; False when the timer's exception ended it. Any other exception
# (Empty, Corrupted) is the caller's.
# The timer can fire as the call's own exception (a full disk) leaves it and before any
# handler here has begun (CPython 3.10 runs signal handlers there): the inner ``try``
# has ended by then, and the outer one catches the timer's exception.
def armed_call(putting, n, call):
    global armed
    try:
        try:
            armed = True
            result = call()
        finally:
            armed = False
    except BaseException as exc:
        if not interrupt(exc):
            raise
        counts["interrupted"] += 1
        if putting:
            maybe_put.add(n)
        else:
            counts["taken when interrupted"] += 1
        return False
    if putting:
        acked.add(n)
    else:
        got.extend(result)
    return True

signal.signal(signal.SIGALRM, handler)
"""

# Code for a child that ends by accounting for every item: ``acked`` (set), ``got`` and
# ``left`` (lists) and ``maybe_put`` (set: pushes whose call did not return) must be
# defined; prints the outcome as a dict.
ACCOUNT_FOR_EVERY_ITEM = """
seen = got + left
seen_once = set(seen)
missing = [v for v in acked if v not in seen_once]
print({"duplicated": len(seen) - len(seen_once), "missing": len(missing),
       "stray": len(seen_once - acked - maybe_put), "left": len(left)})
"""

# Code for a child: open descriptors until there is none left (they stay in ``spent``,
# for the child to close when it wants them back).
SPEND_EVERY_DESCRIPTOR = """
spent = []
try:
    while True:
        spent.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
"""


def run_py(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet in a child to completion (stdout/stderr captured as text)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=child_env(), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
    )


def run_module(*args: str, timeout: float = 60,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <args>`` in a child to completion (``env``: extra variables)."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        env=child_env(env), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
    )


class Child:
    """A child Python process whose stdout lines are collected by a reader thread.

    Only complete lines (ending in a newline) count: a line cut short by SIGKILL was
    never acknowledged.
    """

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT,
        )
        self._lines: list[str] = []
        self._partial = b""
        self._cond = threading.Condition()
        self._done = False
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            with self._cond:
                if not chunk:
                    self._done = True
                    self._cond.notify_all()
                    return
                data = self._partial + chunk
                *whole, self._partial = data.split(b"\n")
                self._lines.extend(line.decode() for line in whole)
                self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    @property
    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def wait_lines(self, n: int, timeout: float = 30) -> list[str]:
        """Wait until at least ``n`` complete lines arrived; fail on timeout or exit."""
        end = time.monotonic() + timeout
        with self._cond:
            while len(self._lines) < n:
                left = end - time.monotonic()
                if self._done or left <= 0:
                    break
                self._cond.wait(left)
            lines = list(self._lines)
        if len(lines) < n:
            self.kill()
            raise AssertionError(
                f"child gave {len(lines)} lines, wanted {n}; rc={self.proc.returncode} "
                f"stderr={self.stderr.decode(errors='replace')[-2000:]}"
            )
        return lines

    def kill(self) -> list[str]:
        """SIGKILL the child, wait for it, and return every complete line it wrote."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        self._err_reader.join(timeout=30)
        return self.lines

    def finish(self, timeout: float = 60) -> tuple[int, list[str]]:
        """Wait for a normal exit; return the exit code and the lines."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(timeout=30)
        self._err_reader.join(timeout=30)
        return rc, self.lines

    def killed_by_sigkill(self) -> bool:
        return self.proc.returncode == -signal.SIGKILL


def dir_size(path: str | os.PathLike[str]) -> int:
    """Sum of the sizes of the files in a directory tree."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:  # removed by a compaction meanwhile
                pass
    return total


def overwrite(path: str | os.PathLike[str], offset: int, data: bytes) -> None:
    """Write ``data`` over a file's bytes at ``offset`` (no append, no truncation)."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def files_named(path: str | os.PathLike[str], suffix: str = "", prefix: str = "") -> list[str]:
    """Files of a LevelDB directory whose names match, sorted by name."""
    return sorted(
        os.path.join(path, name) for name in os.listdir(path)
        if name.endswith(suffix) and name.startswith(prefix)
    )


def end(*procs: subprocess.Popen[str] | None) -> None:
    """SIGCONT (a stopped one dies too) and SIGKILL every process still running; reap."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
