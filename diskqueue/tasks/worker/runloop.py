"""``tasks.run()``: a worker in the foreground until a signal (or, draining, until no
job is left). Signal handlers only set flags; the main thread waits on an Event."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from ..._checks import check_duration

if TYPE_CHECKING:
    from ..taskqueue import TaskQueue
    from .worker import Worker

SIGNALS = (signal.SIGTERM, signal.SIGINT)
DRAIN_CHECK = 0.05  # seconds between checks that no job is left, while draining


class _Flags:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.force = threading.Event()

    def handler(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            self.force.set()  # a second signal: stop waiting for the running jobs
        self.stop.set()


def _install(flags: _Flags) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, flags.handler) for sig in SIGNALS}


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


class Progress:
    """A progress bar of finished jobs over all jobs, on stderr: tqdm's when it is
    installed, else one plain line rewritten in place."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.next_draw = 0.0
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar: Any = None
        else:
            self.bar = tqdm(total=worker.remaining(), unit="job", desc="draining",
                            file=sys.stderr, ncols=_columns())

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if now < self.next_draw and not force:
            return
        self.next_draw = now + 0.2
        done = self.worker.finished
        total = done + self.worker.remaining()
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()
        else:
            sys.stderr.write(f"\rdraining: {done}/{total} jobs")
            sys.stderr.flush()

    def close(self) -> None:
        self.update(force=True)
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")


def run_until_stopped(tasks: TaskQueue, *, concurrency: int, pool: str, queues: Any,
                      grace: float, drain: bool, progress: Optional[bool],
                      app: Optional[str],
                      metrics: tuple[Optional[int], str] = (None, "127.0.0.1")) -> bool:
    # infinity (or None): wait for the running jobs however long they take
    seconds = check_duration("grace", grace, allow_inf=True)
    flags = _Flags()
    previous = _install(flags)
    bar: Optional[Progress] = None
    try:
        worker = tasks.start(concurrency, pool, queues=queues, app=app,
                             metrics_port=metrics[0], metrics_host=metrics[1])
        try:
            if drain and (progress if progress is not None else sys.stderr.isatty()):
                bar = Progress(worker)
            if drain:
                seen_idle = False  # twice in a row: covers other processes' moves too
                while not flags.stop.wait(DRAIN_CHECK):
                    if bar is not None:
                        bar.update()
                    idle = worker.idle()
                    if idle and seen_idle:
                        break
                    seen_idle = idle
            else:
                flags.stop.wait()
        finally:
            clean = worker.stop(seconds, interrupt=flags.force)
            if bar is not None:
                bar.close()
    finally:
        _restore(previous)
    return clean
