#!/usr/bin/env python
"""Many processes, one directory: a client served over the Unix socket, and takeover.

    python benchmarks/sharing.py [--quick] [--markdown]

A holder process opens the queue and sleeps; this process opens it as a client and
enqueues 64-byte values. The same work by the holder's own role (in-process owner) and
by raw plyvel runs in the same run, so the ratios are the figures. Takeover: SIGKILL the
holder and time the client's next call, which opens the directory itself.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import diskqueue as dq  # noqa: E402

try:
    import plyvel
except ImportError:  # Python 3.13+
    import plyvel_next as plyvel  # type: ignore[no-redef]

HOLDER = "import sys, time, diskqueue as dq; q = dq.Queue(sys.argv[1]); print('ok', flush=True); " \
         "time.sleep(3600)"
VALUES = [random.Random(7).randbytes(64) for _ in range(1000)]


def start_holder(path: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdout=subprocess.PIPE,
                            env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ok"
    return proc


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux's /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate(n: int, work) -> float:
    started = time.perf_counter()
    work()
    return n / (time.perf_counter() - started)


def ping_pong(n: int) -> float:
    """Round trips per second of a bare Unix socket between two processes, each sleeping
    in a blocking recv: what a call costs when both sides sleep between messages (the
    client and the owner poll a little first), and it moves with the machine's load."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        while True:
            data = b.recv(65536)
            if not data:
                os._exit(0)
            b.sendall(data)
    b.close()
    message = b"x" * 80
    started = time.perf_counter()
    for _ in range(n):
        a.sendall(message)
        a.recv(65536)
    elapsed = time.perf_counter() - started
    a.close()
    os.waitpid(pid, 0)
    return n / elapsed


def one_round(base: str, n: int) -> dict[str, float]:
    out = {"ping-pong": ping_pong(n)}
    db = plyvel.DB(os.path.join(base, "raw"), create_if_missing=True)
    out["raw put"] = rate(n, lambda: [db.put(i.to_bytes(8, "big"), VALUES[i % 1000])
                                      for i in range(n)])
    db.close()
    with dq.Queue(os.path.join(base, "owner"), codec="raw") as q:
        out["owner enqueue"] = rate(n, lambda: [q.enqueue(VALUES[i % 1000]) for i in range(n)])
        out["owner enqueue_many"] = rate(n, lambda: [q.enqueue_many(VALUES[:100])
                                                     for _ in range(n // 100)])
    path = os.path.join(base, "shared")
    holder = start_holder(path)
    try:
        with dq.Queue(path, codec="raw") as q:
            assert q.role == "client"
            cpu = time.process_time(), cpu_seconds(holder.pid)
            out["client enqueue"] = rate(n, lambda: [q.enqueue(VALUES[i % 1000])
                                                     for i in range(n)])
            # CPU per call of both processes: what a call costs whatever the machine's
            # load does to its wall time (polling before a sleep counts too)
            out["client cpu"] = (time.process_time() - cpu[0]) / n
            out["holder cpu"] = (cpu_seconds(holder.pid) - cpu[1]) / n
            out["client enqueue_many"] = rate(n, lambda: [q.enqueue_many(VALUES[:100])
                                                          for _ in range(n // 100)])
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            started = time.perf_counter()
            q.enqueue(b"after the kill")
            out["takeover"] = time.perf_counter() - started
            assert q.role == "owner"
    finally:
        holder.kill()
        holder.wait()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer items and rounds")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    n, rounds = (5_000, 3) if args.quick else (20_000, 7)
    results = []
    for r in range(rounds):
        base = tempfile.mkdtemp(prefix="dq-share-")
        try:
            results.append(one_round(base, n))
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)

    def med(key: str) -> float:
        return statistics.median(res[key] for res in results)

    def ratio(key: str, ref: str) -> float:
        return statistics.median(res[key] / res[ref] for res in results)

    rows = [
        ("client enqueue, one at a time", f"{med('client enqueue') / 1e3:.1f}k ops/s",
         f"{ratio('client enqueue', 'ping-pong'):.2f}x socket round trip, "
         f"{ratio('client enqueue', 'owner enqueue'):.2f}x owner", ">= 30k ops/s",
         med("client enqueue") >= 30_000),
        ("client enqueue, CPU per call", f"{med('client cpu') * 1e6:.0f} + "
         f"{med('holder cpu') * 1e6:.0f} µs", "client + holder process", "-", None),
        ("client enqueue_many(100)", f"{med('client enqueue_many') / 1e3:.0f}k items/s",
         f"{ratio('client enqueue_many', 'owner enqueue_many'):.2f}x owner", ">= 300k items/s",
         med("client enqueue_many") >= 300_000),
        ("bare Unix socket round trip (same run)", f"{med('ping-pong') / 1e3:.1f}k/s",
         "two processes, 80 bytes each way, blocking recv", "-", None),
        ("owner enqueue (same run)", f"{med('owner enqueue') / 1e3:.1f}k ops/s",
         f"{ratio('owner enqueue', 'raw put'):.2f}x raw put", "-", None),
        ("owner enqueue_many(100) (same run)", f"{med('owner enqueue_many') / 1e3:.0f}k items/s",
         "-", "-", None),
        ("takeover after SIGKILL of the holder", f"{med('takeover') * 1e3:.1f} ms",
         f"max {max(r['takeover'] for r in results) * 1e3:.1f} ms", "< 1 s",
         max(r["takeover"] for r in results) < 1.0),
    ]
    head = ("measure", "median", "compared", "target", "met")
    body = [(a, b, c, d, "-" if e is None else ("yes" if e else "NO")) for a, b, c, d, e in rows]
    print(f"python {sys.version.split()[0]}, plyvel {plyvel.__version__}, "
          f"{os.cpu_count()} cores, {rounds} rounds of {n:,} items, 64-byte values")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in body:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
        for row in (head, *body):
            print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
