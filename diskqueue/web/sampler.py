"""The dashboard's memory of the last hour: a thread samples the counts every few
seconds into a ring buffer, which the page reads (only the samples it lacks).

Sampling here, once per interval whatever the number of open pages, is what keeps an
open page cheap for the workers: a page's poll reads memory, not the directory.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Optional

from .source import Source, window_latency

log = logging.getLogger("diskqueue.web")

INTERVAL = 5.0  # seconds between two samples
KEEP = 3600.0  # seconds of samples kept


class Sampler:
    """Samples ``source`` every ``interval`` seconds, keeping ``keep`` seconds of them.

    A sample is ``{"t": epoch seconds, "queues": {name: {depth, scheduled, in_flight,
    dead, done, failed, rate, p50, p99}}}``; ``rate`` is runs finished per second and
    ``p50``/``p99`` the enqueue-to-start latency (ms) of the jobs started since the
    sample before.
    """

    def __init__(self, source: Source, interval: float = INTERVAL, keep: float = KEEP) -> None:
        self.source = source
        self.interval = interval
        self.samples: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=max(int(keep / interval), 2))
        self.workers: list[dict[str, Any]] = []
        self._hist: dict[str, dict[int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="diskqueue-web-sampler",
                                        daemon=True)

    def start(self) -> None:
        """Take the first sample now (so the first page has numbers), then go on in a thread."""
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the sampling thread to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # a closed or failing directory: shown as stale numbers
                log.exception("dashboard: could not sample %s", self.source.path)

    def sample(self) -> dict[str, Any]:
        """Read the directory once and append a sample; returns it."""
        now = time.time()
        counts = self.source.counts()
        hists = self.source.latency()
        workers = self.source.workers()
        with self._lock:
            before = self.samples[-1] if self.samples else None
            queues: dict[str, Any] = {}
            for name, c in counts.items():
                row = {k: c.get(k, 0) for k in ("depth", "scheduled", "in_flight", "dead",
                                                "done", "failed")}
                row["rate"] = None
                if before is not None and name in before["queues"]:
                    prev = before["queues"][name]
                    ran = row["done"] + row["failed"] - prev["done"] - prev["failed"]
                    row["rate"] = round(max(ran, 0) / max(now - before["t"], 1e-3), 3)
                hist = hists.get(name, {})
                row["p50"], row["p99"] = window_latency(hist, self._hist.get(name, {}))
                queues[name] = row
            self._hist = hists
            sample = {"t": now, "queues": queues}
            self.samples.append(sample)
            self.workers = workers
            return sample

    def since(self, t: Optional[float]) -> list[dict[str, Any]]:
        """The samples taken after epoch time ``t`` (None: all of them)."""
        with self._lock:
            return [s for s in self.samples if t is None or s["t"] > t]
