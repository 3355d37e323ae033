"""Awaiting a job's result without blocking the event loop, nor a thread per job.

``await job.aresult(timeout=)`` reads the job's record; while it is not finished the task
waits for the directory's *bell*: one thread per directory, alive only while some task
awaits a result, that waits on the condition this process's workers notify when a job
finishes (so a local worker's result arrives at once) and rings every 0.2 s anyway,
which is how a job finished by a worker in another process is seen, as the blocking
``result()`` does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from .._checks import check_duration
from ..errors import JobTimeout
from .directory import shared
from .layout import FINISHED

if TYPE_CHECKING:
    from typing import Protocol

    class Job(Protocol):
        """What of a :class:`~diskqueue.tasks.Job` this module reads (job.py imports
        this module, so it cannot import job.py)."""
        id: str

        @property
        def state(self) -> str:
            """The job's state now."""

        def result(self, timeout: Optional[float] = None) -> Any:
            """The job's value, or the error it died of."""

# How often a waiting result looks again without being told: jobs finished by workers of
# other processes are seen within this.
RING_EVERY = 0.2

_bells: dict[str, _Bell] = {}
_bells_lock = threading.Lock()


class _Bell:
    """Wakes every task awaiting a result in one directory (see the module)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._futures: list[asyncio.Future[None]] = []
        self._thread: Optional[threading.Thread] = None

    async def wait(self, seconds: Optional[float]) -> None:
        """Until the next ring (or ``seconds``, if sooner)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._futures.append(future)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"diskqueue results {self._path}")
                self._thread.start()
        timer = None if seconds is None else loop.call_later(seconds, _ring, future)
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()

    def _run(self) -> None:
        sh = shared(self._path)
        while True:
            with self._lock:
                if not self._futures:
                    self._thread = None
                    return
            with sh.finished:
                sh.waiters += 1
                try:
                    sh.finished.wait(RING_EVERY)
                finally:
                    sh.waiters -= 1
            with self._lock:
                futures, self._futures = self._futures, []
            for future in futures:
                try:
                    future.get_loop().call_soon_threadsafe(_ring, future)
                except RuntimeError:  # its loop is closed
                    pass


def _ring(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _bell(path: str) -> _Bell:
    with _bells_lock:
        bell = _bells.get(path)
        if bell is None:
            bell = _bells[path] = _Bell(path)
        return bell


async def result(job: Job, path: str, timeout: Optional[float] = None) -> Any:
    """``job.result(timeout)`` for asyncio: the value, or ``JobFailed``/``JobTimeout``
    (see :meth:`Job.result`), waiting without blocking the loop."""
    seconds = check_duration("timeout", timeout, allow_inf=True)
    end = None if seconds is None else time.monotonic() + seconds
    bell = _bell(path)
    while True:
        if job.state in FINISHED:  # UnknownJob if it is gone
            return job.result(timeout=0)
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            raise JobTimeout(f"job {job.id} is still {job.state} after {timeout} s",
                             error_type="JobTimeout", error="result() timed out")
        await bell.wait(left)
