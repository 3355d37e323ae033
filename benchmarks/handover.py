#!/usr/bin/env python
"""The confirmation window: items a client dequeued that come back when the holder is
SIGKILLed before it read the client's "got it".

    python benchmarks/handover.py [--kills 60]

A producer keeps the queue full and a consumer dequeues one item at a time as a client;
the process holding the directory (a bare holder or the producer) is SIGKILLed, while
the consumer is busy, and started again (a consumer that took over is restarted).
An item the consumer got twice was in the window when its holder died; the window is
estimated as (items twice / kills of a holder serving the consumer) x the consumer's
time per dequeue as a client.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLDER = "import sys, time, diskqueue as dq; q = dq.Queue(sys.argv[1]); time.sleep(3600)"
PRODUCER = r"""
import itertools, sys, diskqueue as dq
q = dq.Queue(sys.argv[1])
tag = sys.argv[2]
for i in itertools.count():
    if len(q) < 2000:
        q.enqueue_many([f"{tag}-{i}-{k}" for k in range(50)])
"""
CONSUMER = r"""
import os, sys, time, diskqueue as dq
q = dq.Queue(sys.argv[1])
while True:
    try:
        value = q.dequeue(block=True, timeout=0.2).value
    except dq.Empty:
        continue
    os.write(1, f"{time.monotonic():.6f} {q.role} {value}\n".encode())
"""


def start(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env,
                            stdout=subprocess.PIPE if code is CONSUMER else subprocess.DEVNULL)


def holder_pid(path: str) -> int | None:
    try:
        with open(os.path.join(path, "diskqueue.pid")) as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


class Consumer:
    """The consumer process and the lines it printed (``time role value``), read as
    they come, so a kill can wait until it is busy as a client."""

    def __init__(self, path: str) -> None:
        self.proc = start(CONSUMER, path)
        self.lines: list[list[str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode().split()
            if len(line) == 3:
                self.lines.append(line)

    def stop(self) -> list[list[str]]:
        self.proc.kill()
        self.proc.wait()
        self._reader.join(10)
        return self.lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=60)
    opts = parser.parse_args()
    base = tempfile.mkdtemp(prefix="dq-handover-")
    path = os.path.join(base, "q")
    rnd = random.Random(11)
    holders: dict[str, subprocess.Popen] = {}
    consumers: list[Consumer] = []
    incarnation = 0

    def begin(role: str) -> None:
        nonlocal incarnation
        incarnation += 1
        if role == "consumer":
            consumers.append(Consumer(path))
        else:
            extra = (f"p{incarnation}",) if role == "producer" else ()
            holders[role] = start(HOLDER if role == "holder" else PRODUCER, path, *extra)

    begin("holder")
    time.sleep(1.0)
    begin("producer")
    begin("consumer")
    kills = 0
    counted_at = 0
    started = time.monotonic()
    try:
        while kills < opts.kills:
            time.sleep(rnd.uniform(0.01, 0.05))
            pid = holder_pid(path)
            consumer = consumers[-1]
            if consumer.proc.pid == pid:  # it took over: start it again as a client
                consumer.stop()
                begin("consumer")
                continue
            victim = next((r for r, p in holders.items() if p.pid == pid), None)
            recent = consumer.lines[-20:]
            if victim is None or len(consumer.lines) < counted_at + 20 \
                    or any(line[1] != "client" for line in recent):
                continue  # kill only while the consumer is busy dequeuing as a client
            holders[victim].kill()
            holders[victim].wait()
            kills += 1
            counted_at = len(consumer.lines)
            begin(victim)
    finally:
        elapsed = time.monotonic() - started
        for proc in holders.values():
            proc.kill()
            proc.wait()
        lines = [line for c in consumers for line in c.stop()]
        shutil.rmtree(base, ignore_errors=True)
    seen = collections.Counter(line[2] for line in lines)
    twice = sum(n - 1 for n in seen.values() if n > 1)
    # the consumer's time per dequeue as a client: gaps between two in a row
    gaps = sorted(float(b[0]) - float(a[0]) for a, b in itertools.pairwise(lines)
                  if a[1] == b[1] == "client" and 0 < float(b[0]) - float(a[0]) < 0.1)
    per_take = gaps[len(gaps) // 2] if gaps else float("nan")
    # A kill while the consumer dequeues as a client lands in a window with probability
    # window / time per dequeue, so: window = twice x time per dequeue / kills.
    window = twice * per_take / max(kills, 1)
    print(f"{kills} kills of a holder serving a busy consumer, {len(lines)} items dequeued "
          f"in {elapsed:.1f} s")
    print(f"items delivered twice: {twice}; a client's dequeue takes {per_take * 1e3:.2f} "
          f"ms (median); confirmation window ~ {window * 1e6:.0f} us")

if __name__ == "__main__":
    main()
