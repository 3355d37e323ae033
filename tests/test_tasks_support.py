"""Helpers for the task-layer tests (no tests here): a fake clock, waiting on a
condition, writing a task module to import, running ``diskq-worker`` in a child."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from . import faults
except ImportError:
    import faults


class FakeClock:
    """An injectable clock: epoch seconds that move only when told to."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds


def until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Wait for ``cond()`` to be truthy (checked every 10 ms); fail after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


APP = '''
import os, time
from diskqueue import TaskQueue, Retry

tasks = TaskQueue(os.environ.get("DQ_TEST_JOBS", "unused-task-dir"))
LOG = os.environ.get("DQ_TEST_LOG", os.devnull)


def note(text):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (text + "\\n").encode())
    finally:
        os.close(fd)


@tasks.task()
def work(n, secs=0.0):
    note(f"start {n} {os.getpid()}")
    time.sleep(secs)
    note(f"end {n} {os.getpid()}")
    return n


@tasks.task(retries=2, backoff=0.05)
def flaky(n):
    note(f"start {n} {os.getpid()}")
    raise ValueError(f"flaky {n}")
'''


def write_app(directory: Path, name: str = "jobsapp", source: str = APP) -> str:
    """Write a task module into ``directory``; returns its module name."""
    (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return name


def env(log: Path | None = None, **extra: str) -> dict[str, str]:
    out = faults.child_env()
    if log is not None:
        out["DQ_TEST_LOG"] = str(log)
    out.update(extra)
    return out


def worker(path: Path, app: str, *args: str, cwd: Path, log: Path | None = None,
           **popen: Any) -> subprocess.Popen[str]:
    """Start ``python -m diskqueue.cli.worker PATH --app APP ARGS`` in ``cwd``."""
    return subprocess.Popen(
        [sys.executable, "-m", "diskqueue.cli.worker", str(path), "--app", app, *args],
        cwd=cwd, env=env(log, DQ_TEST_JOBS=str(path)), text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


def run_worker(path: Path, app: str, *args: str, cwd: Path, log: Path | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diskqueue.cli.worker", str(path), "--app", app, *args],
        cwd=cwd, env=env(log, DQ_TEST_JOBS=str(path)), text=True, capture_output=True,
        timeout=timeout,
    )


def diskq(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return faults.run_module("diskqueue.cli", *args, timeout=timeout)


def lines(log: Path) -> list[list[str]]:
    """The log's lines, split into words (only complete lines)."""
    if not log.exists():
        return []
    text = log.read_text()
    return [line.split() for line in text.split("\n")[:-1]]


def starts(log: Path) -> dict[int, list[int]]:
    """``{n: [pid of each start]}`` from the app's log."""
    out: dict[int, list[int]] = {}
    for words in lines(log):
        if words[0] == "start":
            out.setdefault(int(words[1]), []).append(int(words[2]))
    return out


def ends(log: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for words in lines(log):
        if words[0] == "end":
            out[int(words[1])] = out.get(int(words[1]), 0) + 1
    return out


