#!/usr/bin/env python
"""Celery on a diskqueue directory beside Celery on a local redis-server, same run.

    python benchmarks/celery_redis.py [--quick] [--jobs N] [--rounds R]

Needs the ``celery`` and ``test`` extras (celery, kombu, the redis client) and a
``redis-server`` binary; the server is started here on 127.0.0.1 and a free port, with
persistence off. Every Celery process is a real ``celery worker`` (threads pool,
concurrency 4) or a producer process of its own. Cases, rounds interleaved between the
two brokers, median and p90 shown:

- enqueue: one producer process calling ``noop.delay(i)`` N times, no worker running.
  On diskqueue the producer is a *client*: another process holds the directory, as a
  running worker would (the row "enqueue, producer holds the directory" shows the
  case where it is alone).
- drain: a worker started on N queued no-op tasks, from the first task's start to the
  last one's (Celery's default settings: acks on receipt, prefetch 4 per thread). The
  worker holds the directory; in "drain, worker is a client" another process does (an
  app that opened it first), so each take and ack is a round trip to it.
- kill: ``task_acks_late=True``; a worker drains N tasks that each note their number;
  the worker (with its pool) is SIGKILLed halfway, a new worker is started, and after
  the queue is empty and quiet for 3 s the jobs never run are counted. On Redis the
  killed worker's unacked messages return only after ``visibility_timeout`` (1 hour).

- round trip (a probe, not Celery): what one call to the broker costs from another
  process on this machine right now: ``PING`` on Redis, ``len`` of a prefix from a
  client of the directory on diskqueue; calls per second. A producer makes one such
  call per task on either broker, so this row says how much of the enqueue rate is
  the round trip.

Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP = '''
import os, time
from celery import Celery

app = Celery("bench", broker=os.environ["BROKER_URL"])
app.conf.worker_hijack_root_logger = False
app.conf.task_acks_late = os.environ.get("ACKS_LATE") == "1"
MARKS = os.environ["MARKS"]


@app.task
def noop(i):
    pass


@app.task
def mark(what):
    with open(MARKS, "a") as f:
        f.write("%s %r\\n" % (what, time.time()))


@app.task
def noted(i):
    with open(MARKS, "a") as f:
        f.write("done %d\\n" % i)
'''

PRODUCE = '''
import sys, time
from app import app, noop, mark, noted
n, kind = int(sys.argv[1]), sys.argv[2]
if kind == "enqueue":
    for i in range(50):  # warm-up: connection, declarations
        noop.delay(i)
    start = time.perf_counter()
    for i in range(n):
        noop.delay(i)
    print(n / (time.perf_counter() - start))
elif kind == "drain":
    mark.delay("first")
    for i in range(n):
        noop.delay(i)
    mark.delay("last")
else:
    for i in range(n):
        noted.delay(i)
'''


def log(*words: object) -> None:
    print(*words, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(directory: str) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", directory],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait()


def wait(check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError("benchmark step timed out")
        time.sleep(0.02)


class Run:
    """One broker in one fresh temporary directory."""

    def __init__(self, broker: str, workdir: str, base_url: str = "") -> None:
        self.broker = broker
        self.dir = tempfile.mkdtemp(dir=workdir)
        with open(os.path.join(self.dir, "app.py"), "w") as f:
            f.write(APP)
        self.marks = os.path.join(self.dir, "marks.txt")
        self.url = base_url or f"diskqueue://{self.dir}/queue"
        self.env = dict(os.environ, BROKER_URL=self.url, MARKS=self.marks,
                        PYTHONPATH=os.pathsep.join([self.dir, ROOT]))

    def flush(self) -> None:
        if self.broker == "redis":
            import redis

            redis.Redis.from_url(self.url).flushall()

    def produce(self, n: int, kind: str) -> str:
        out = subprocess.run([sys.executable, "-c", PRODUCE, str(n), kind], cwd=self.dir,
                             env=self.env, capture_output=True, text=True, check=False)
        if out.returncode:
            raise RuntimeError(out.stderr[-2000:])
        return out.stdout

    def worker(self, name: str, acks_late: bool = False) -> subprocess.Popen[bytes]:
        env = dict(self.env, ACKS_LATE="1" if acks_late else "0")
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "app", "worker", "--pool", "threads",
             "--concurrency", "4", "--hostname", f"{name}@%h", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
            cwd=self.dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def marks_list(self) -> list[list[str]]:
        try:
            with open(self.marks) as f:
                return [line.split() for line in f.read().splitlines()]
        except FileNotFoundError:
            return []

    def holder(self) -> subprocess.Popen[str]:
        """A process holding the directory, as a running worker would."""
        code = ("import sys, time, diskqueue as dq\n"
                "q = dq.PrefixQueue(sys.argv[1]); print('ready', flush=True)\n"
                "time.sleep(3600)\n")
        proc = subprocess.Popen([sys.executable, "-c", code, f"{self.dir}/queue"],
                                env=self.env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()
        return proc


def stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM) if proc.pid else None
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def enqueue(run: Run, n: int, alone: bool = False) -> float:
    holder = None if alone or run.broker == "redis" else run.holder()
    try:
        return float(run.produce(n, "enqueue"))
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


def drain(run: Run, n: int, client: bool = False) -> float:
    run.produce(n, "drain")
    holder = run.holder() if client else None
    worker = run.worker("drain")
    try:
        wait(lambda: any(m[0] == "last" for m in run.marks_list()), 600)
    finally:
        stop(worker)
        if holder is not None:
            holder.kill()
            holder.wait()
    when = {m[0]: float(m[1]) for m in run.marks_list()}
    return n / (when["last"] - when["first"])


def kill(run: Run, n: int) -> int:
    """Jobs never run after a SIGKILL halfway and a restart."""
    run.produce(n, "kill")
    first = run.worker("k1", acks_late=True)
    wait(lambda: len(run.marks_list()) >= n // 2, 600)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    second = run.worker("k2", acks_late=True)
    try:
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 3.0:
            time.sleep(0.2)
            count = len(run.marks_list())
            if count != last:
                last, quiet_since = count, time.monotonic()
    finally:
        stop(second)
    ran = {int(m[1]) for m in run.marks_list() if m[0] == "done"}
    return n - len(ran)


def round_trip(run: Run, n: int) -> float:
    """Bare calls per second to the broker from a process that does not hold it."""
    calls = max(n, 2000)
    if run.broker == "redis":
        import redis

        client = redis.Redis.from_url(run.url)
        client.ping()
        start = time.perf_counter()
        for _ in range(calls):
            client.ping()
        rate = calls / (time.perf_counter() - start)
        client.close()
        return rate
    sys.path.insert(0, ROOT)
    import diskqueue as dq

    holder = run.holder()
    try:
        with dq.PrefixQueue(f"{run.dir}/queue") as q:
            assert q.role == "client"
            start = time.perf_counter()
            for _ in range(calls):
                q.length("celery")
            return calls / (time.perf_counter() - start)
    finally:
        holder.kill()
        holder.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs and rounds")
    parser.add_argument("--jobs", type=int, help="tasks per case (default 5000; quick 1000)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; quick 1)")
    args = parser.parse_args(argv)
    n = args.jobs or (1000 if args.quick else 5000)
    rounds = args.rounds or (1 if args.quick else 3)
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as workdir, redis_server(workdir) as redis_url:
        for r in range(rounds):
            order = ["diskqueue", "redis"] if r % 2 == 0 else ["redis", "diskqueue"]
            for broker in order:
                base = redis_url if broker == "redis" else ""
                cases = [("round trip (probe)", round_trip), ("enqueue", enqueue),
                         ("drain", drain), ("kill", kill)]
                if broker == "diskqueue":
                    cases.insert(2, ("enqueue, producer holds the directory",
                                     lambda run, n: enqueue(run, n, alone=True)))
                    cases.insert(4, ("drain, worker is a client",
                                     lambda run, n: drain(run, n, client=True)))
                for case, fn in cases:
                    run = Run(broker, workdir, base)
                    run.flush()
                    value = fn(run, n)
                    log(f"round {r + 1} {broker:9} {case}: {value:,.0f}")
                    results.setdefault((broker, case), []).append(value)
                    shutil.rmtree(run.dir, ignore_errors=True)
    print(table(results, n, rounds))
    return 0


def table(results: dict[tuple[str, str], list[float]], n: int, rounds: int) -> str:
    unit = {"kill": "jobs lost", "round trip (probe)": "calls/s"}
    rows = [f"N = {n:,} tasks, {rounds} round(s), threads pool, concurrency 4", "",
            "| broker | case | median | p90 (slow side) | vs redis |", "|---|---|---|---|---|"]
    for (broker, case), values in results.items():
        med = statistics.median(values)
        slow = max(values) if case == "kill" else min(values)
        other = results.get(("redis", case.split(",")[0]))
        ratio = ""
        if broker == "diskqueue" and other and case != "kill":
            ratio = f"{med / statistics.median(other):.2f}x"
        rows.append(f"| {broker} | {case} | {med:,.0f} {unit.get(case, 'tasks/s')} | "
                    f"{slow:,.0f} | {ratio} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
