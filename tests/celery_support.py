"""Helpers for the Celery tests: real ``celery worker`` processes, producers in other
processes, a redis-server on 127.0.0.1 when one is installed.

Tasks report by appending lines to a file (one ``write`` of a short line in append mode
is atomic), so what ran can be read back whatever the broker, without a result backend.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from faults import REPO_ROOT, child_env

APP = '''
import os
import time

from celery import Celery

app = Celery("app", broker=os.environ["BROKER_URL"])
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
OUT = os.environ["TASK_OUT"]


def note(*words):
    with open(OUT, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\\n")


@app.task
def record(n):
    note("done", n, round(time.time(), 3))


@app.task(priority=0)
def urgent(n):
    note("done", n, round(time.time(), 3))


@app.task
def hold(n):
    """Runs until the file RELEASE exists (or 60 s): long enough to be killed in."""
    note("start", n, os.getpid())
    release = OUT + ".release"
    end = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.05)
    note("done", n, round(time.time(), 3))
'''


def write_app(directory: Path) -> None:
    """Write the test app as ``app.py`` in ``directory``."""
    (directory / "app.py").write_text(APP)


def app_env(directory: Path, broker: str) -> dict[str, str]:
    """The environment a worker or producer of the test app runs with."""
    env = child_env({"BROKER_URL": broker, "TASK_OUT": str(directory / "out.txt")})
    env["PYTHONPATH"] = str(directory) + os.pathsep + env["PYTHONPATH"]
    return env


def lines(directory: Path) -> list[list[str]]:
    """What the tasks wrote so far, split into words."""
    try:
        text = (directory / "out.txt").read_text()
    except FileNotFoundError:
        return []
    return [line.split() for line in text.splitlines()]


def done(directory: Path) -> list[str]:
    """The ``n`` of every task that finished, in the order they finished."""
    return [words[1] for words in lines(directory) if words[0] == "done"]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def produce(directory: Path, broker: str, code: str, timeout: float = 60) -> str:
    """Run producer ``code`` (``app`` and its tasks imported) in a child process."""
    result = subprocess.run(
        [sys.executable, "-c", "from app import *\n" + code], cwd=directory,
        env=app_env(directory, broker), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def producer(directory: Path, broker: str, code: str) -> subprocess.Popen[bytes]:
    """Start producer ``code`` in a child process and return at once."""
    return subprocess.Popen([sys.executable, "-c", "from app import *\n" + code],
                            cwd=directory, env=app_env(directory, broker))


def celery(directory: Path, broker: str, *args: str,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one ``celery -A app ...`` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "app", *args], cwd=directory,
        env=app_env(directory, broker), capture_output=True, text=True, timeout=timeout)


class Worker:
    """A ``celery -A app worker`` process in a session of its own (so a SIGKILL can
    take its pool processes with it, as when a machine loses the worker)."""

    def __init__(self, directory: Path, broker: str, pool: str = "threads",
                 concurrency: int = 2, name: str = "w1") -> None:
        self.log = open(directory / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "app", "worker", "--pool", pool,
             "--concurrency", str(concurrency), "--hostname", f"{name}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel", "INFO"],
            cwd=directory, env=app_env(directory, broker), stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.path = directory / f"{name}.log"

    def output(self) -> str:
        return self.path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(lambda: " ready." in self.output() or self.proc.poll() is not None,
                 timeout, "the worker to be ready")
        assert self.proc.poll() is None, self.output()[-3000:]

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self, timeout: float = 60) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 and a free port; yields its URL."""
    binary = shutil.which("redis-server")
    assert binary is not None
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def answers() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_for(answers, 30, "redis-server to listen")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


REDIS_MISSING = shutil.which("redis-server") is None
REPO = Path(REPO_ROOT)
