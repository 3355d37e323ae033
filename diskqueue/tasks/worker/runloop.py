"""``tasks.run()``: a worker in the foreground until a signal (or, draining, until no
job is left). Signal handlers only set flags; the main thread waits on an Event."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

from ..._checks import check_duration
from .worker import Worker

log = logging.getLogger("diskqueue.worker")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
DRAIN_CHECK = 0.05  # seconds between checks that no job is left, while draining


class _Flags:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.force = threading.Event()
        self.received: list[int] = []  # the signals, logged by the main loop

    def handler(self, signum: int, frame: Any) -> None:
        """The signal handler: only sets the flags (and notes the signal)."""
        self.received.append(signum)
        if self.stop.is_set():
            self.force.set()  # a second signal: stop waiting for the running jobs
        self.stop.set()

    def said(self, index: int) -> str:
        """The name of the ``index``-th signal received, e.g. ``SIGTERM``."""
        return signal.Signals(self.received[index]).name


def _stopping(flags: _Flags, grace: Optional[float], drain: bool) -> None:
    """Log why the worker stops, and how long its running jobs have."""
    if flags.received:
        why = f"received {flags.said(0)}: stopping"
    else:
        why = "no job left: stopping" if drain else "stopping"
    wait = "until they finish" if grace is None else f"up to {grace:g} s"
    log.info("%s; the running jobs get %s (the grace period), then go back to their "
             "queue%s", why, wait,
             "; a second signal stops the wait" if flags.received else "")


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
        """Redraw (at most five times a second, unless ``force``)."""
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
        """Draw the last state and end the bar's line."""
        self.update(force=True)
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")


def run_until_stopped(start: Callable[[], Worker], *, grace: float, drain: bool,
                      progress: Optional[bool]) -> bool:
    """Start a worker with ``start()`` and run it until SIGTERM/SIGINT (``drain``: or
    until no job is left), then stop it within ``grace`` seconds; True when nothing was
    cut short. Raises ValueError or TypeError for a bad ``grace``, and what ``start()``
    raises."""
    # infinity (or None): wait for the running jobs however long they take
    seconds = check_duration("grace", grace, allow_inf=True)
    flags = _Flags()
    previous = _install(flags)
    bar: Optional[Progress] = None
    try:
        worker = start()
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
            _stopping(flags, seconds, drain)
            clean = worker.stop(seconds, interrupt=flags.force)
            if flags.force.is_set():
                log.warning("received %s again: stopped waiting for the running jobs",
                            flags.said(-1))
            if bar is not None:
                bar.close()
    finally:
        _restore(previous)
    return clean
