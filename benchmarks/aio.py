#!/usr/bin/env python
"""asyncio beside the blocking API, in the same run.

    python benchmarks/aio.py [--quick] [--markdown]

Throughput: ``await q.enqueue(v)`` one at a time, ``await q.dequeue()`` (and with
``block=True`` while items are there), batches of 100 — each against the blocking call
doing the same work, in slices that alternate. Two ratios, each the median over rounds of
async / blocking: by wall time, and by the CPU time of this thread (``thread_time``),
which on a shared machine leaves out the time other processes held the core, the larger
part of the noise; the targets are read on the CPU ratio.
Wake-up: a task awaits ``get()``; the time from the start of a ``put`` to the task
running again, with the put made by another task of the same loop, by another thread's
blocking handle, by a holder process (this process a client), and by a client process
(this process the holder).
Idle: 10,000 tasks awaiting ``get()``: threads and RSS added (asyncio.Queue beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import diskqueue as dq  # noqa: E402
from diskqueue.aio import AsyncQueue  # noqa: E402

VALUE = b"x" * 64
CHUNK = 1000  # ops per slice of a throughput measurement

PUTTER = """
import sys, time
import diskqueue as dq
q = dq.Queue(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    q.put(time.monotonic())
q.close()
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- throughput -----------------------------------------------------------------
def blocking_rate(q: dq.Queue, case: str, n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this thread) of n ops."""
    started, cpu = time.perf_counter(), time.thread_time()
    if case == "enqueue":
        for _ in range(n):
            q.enqueue(VALUE)
    elif case in ("dequeue", "dequeue(block)"):
        block = case == "dequeue(block)"
        for _ in range(n):
            q.dequeue(block=block)
    elif case == "enqueue_many(100)":
        for _ in range(n // 100):
            q.enqueue_many([VALUE] * 100)
    elif case == "dequeue_many(100)":
        for _ in range(n // 100):
            q.dequeue_many(100)
    return time.perf_counter() - started, time.thread_time() - cpu


async def async_rate(q: AsyncQueue, case: str, n: int) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.thread_time()
    if case == "enqueue":
        for _ in range(n):
            await q.enqueue(VALUE)
    elif case in ("dequeue", "dequeue(block)"):
        block = case == "dequeue(block)"
        for _ in range(n):
            await q.dequeue(block=block)
    elif case == "enqueue_many(100)":
        for _ in range(n // 100):
            await q.enqueue_many([VALUE] * 100)
    elif case == "dequeue_many(100)":
        for _ in range(n // 100):
            await q.dequeue_many(100)
    return time.perf_counter() - started, time.thread_time() - cpu


def throughput(path: str, n: int, rounds: int) -> list[tuple[str, float, float, float, float]]:
    pairs = [("enqueue", "dequeue"), ("enqueue", "dequeue(block)"),
             ("enqueue_many(100)", "dequeue_many(100)")]
    rates: dict[str, list[tuple[float, float, float]]] = {}

    coin = random.Random(7)

    async def run() -> None:
        async with AsyncQueue(path) as aq:
            q = aq.blocking
            for _ in range(rounds):
                for fill, take in pairs:
                    # fill (blocking and async), then take both back, in slices of
                    # CHUNK; which side goes first is drawn per slice, so that load
                    # that drifts, and work that comes every so many deletes (a
                    # compaction), fall on both sides alike
                    for case in (fill, take):
                        wall, cpu = [0.0, 0.0], [0.0, 0.0]
                        for _ in range(n // CHUNK):
                            for side in ((0, 1) if coin.random() < 0.5 else (1, 0)):
                                if side:
                                    w, c = await async_rate(aq, case, CHUNK)
                                else:
                                    w, c = blocking_rate(q, case, CHUNK)
                                wall[side] += w
                                cpu[side] += c
                        rates.setdefault(case, []).append(
                            (n / wall[1], n / wall[0], cpu[0] / cpu[1]))
                    gc.collect()
            assert len(q) == 0

    asyncio.run(run())
    rows = []
    for case, runs in rates.items():
        a = statistics.median(x for x, _, _ in runs)
        b = statistics.median(y for _, y, _ in runs)
        wall_ratio = statistics.median(x / y for x, y, _ in runs)
        cpu_ratio = statistics.median(r for _, _, r in runs)
        rows.append((case, a, b, wall_ratio, cpu_ratio))
    return rows


# -- wake-ups ---------------------------------------------------------------------
def wake_in_process(path: str, n: int) -> list[float]:
    """A blocking handle in another thread puts; the awaiting task records the time."""
    waits: list[float] = []

    async def run() -> None:
        async with AsyncQueue(path) as aq:
            blocking = dq.Queue(path)
            go = threading.Event()
            stop = False

            def putter() -> None:
                while True:
                    go.wait()
                    go.clear()
                    if stop:
                        return
                    blocking.put(time.perf_counter())

            thread = threading.Thread(target=putter)
            thread.start()
            for _ in range(n):
                task = asyncio.ensure_future(aq.get())
                await asyncio.sleep(0.0005)  # the dispatcher is waiting
                go.set()
                sent = await task
                waits.append(time.perf_counter() - sent)
            stop = True
            go.set()
            thread.join()
            blocking.close()

    asyncio.run(run())
    return waits


def wake_on_the_loop(path: str, n: int) -> list[float]:
    """Another task of the same loop puts (``await q.put``); the awaiting task records
    the time."""
    waits: list[float] = []

    async def run() -> None:
        async with AsyncQueue(path) as aq:
            for _ in range(n):
                task = asyncio.ensure_future(aq.get())
                await asyncio.sleep(0.0005)  # the task is waiting
                await aq.put(time.perf_counter())
                sent = await task
                waits.append(time.perf_counter() - sent)

    asyncio.run(run())
    return waits


def wake_blocking(path: str, n: int, putter_process: bool) -> list[float]:
    """The reference: a thread blocked in the blocking ``get()``, woken by a put from
    another thread, or (``putter_process``) by the holder process, this one a client."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = None
    if putter_process:
        proc = subprocess.Popen([sys.executable, "-c", PUTTER, path], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    q = dq.Queue(path)
    clock = time.monotonic if putter_process else time.perf_counter
    waits: list[float] = []
    for _ in range(n):
        got: list[float] = []
        thread = threading.Thread(target=lambda out=got: out.append(q.get()))
        thread.start()
        time.sleep(0.002 if putter_process else 0.0005)
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
        else:
            q.put(clock())
        thread.join()
        waits.append(clock() - got[0])
    q.close()
    if proc is not None:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
    return waits


def wake_across(path: str, n: int, here_holds: bool) -> list[float]:
    """A put by another process wakes the task; CLOCK_MONOTONIC is shared by processes."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    waits: list[float] = []

    async def run() -> None:
        aq = AsyncQueue(path) if here_holds else None
        proc = subprocess.Popen([sys.executable, "-c", PUTTER, path], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        aq = aq or AsyncQueue(path)
        assert aq.role == ("owner" if here_holds else "client")
        for _ in range(n):
            task = asyncio.ensure_future(aq.get())
            await asyncio.sleep(0.002)
            proc.stdin.write("\n")
            proc.stdin.flush()
            sent = await task
            waits.append(time.monotonic() - sent)
        await aq.close()
        proc.stdin.close()
        proc.wait(30)

    asyncio.run(run())
    return waits


# -- idle waiters -------------------------------------------------------------------
def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def idle_case(which: str, path: str, n: int) -> tuple[int, float, float]:
    """Threads added, MB of RSS added, and ms of CPU in one idle second, with n tasks
    awaiting ``get()`` on an ``asyncio.Queue`` (``"asyncio"``) or an AsyncQueue."""
    out: list[tuple[int, float, float]] = []

    async def run() -> None:
        q: Any = asyncio.Queue() if which == "asyncio" else AsyncQueue(path)
        gc.collect()
        threads, memory = threading.active_count(), rss()
        tasks = [asyncio.ensure_future(q.get()) for _ in range(n)]
        await asyncio.sleep(0.5)
        cpu = time.process_time()
        await asyncio.sleep(1.0)
        cpu = time.process_time() - cpu
        out.append((threading.active_count() - threads, (rss() - memory) / 2**20,
                    cpu * 1000))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if isinstance(q, AsyncQueue):
            await q.close()

    asyncio.run(run())
    return out[0]


def idle(path: str, n: int) -> list[tuple[str, int, float, float]]:
    """Each case in a fresh interpreter: memory freed by one case and kept by the
    allocator would flatter the next."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = []
    for which, name in (("asyncio", "asyncio.Queue (reference)"), ("aio", "AsyncQueue")):
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "--idle-case",
                              which, path, str(n)], env=env, capture_output=True,
                             text=True, check=True)
        threads, mb, cpu_ms = json.loads(res.stdout)
        rows.append((name, threads, mb, cpu_ms))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--idle-case", nargs=3, metavar=("KIND", "PATH", "N"),
                        help=argparse.SUPPRESS)  # one idle measurement, in a child
    args = parser.parse_args(argv)
    if args.idle_case:
        which, path, count = args.idle_case
        print(json.dumps(idle_case(which, path, int(count))))
        return
    n, rounds, wakes = (5_000, 3, 200) if args.quick else (20_000, 7, 1000)
    root = tempfile.mkdtemp(prefix="dq-bench-aio-")
    try:
        tp = throughput(os.path.join(root, "tp"), n, rounds)
        lat = [("put by another task on the same loop",
                wake_on_the_loop(os.path.join(root, "w0"), wakes), 0.2, 1.0),
               ("put from another thread (blocking handle)",
                wake_in_process(os.path.join(root, "w1"), wakes), 0.2, 1.0),
               ("reference: blocking get() in a thread, same put",
                wake_blocking(os.path.join(root, "w1b"), wakes, False), None, None),
               ("put by the holder process (this one a client)",
                wake_across(os.path.join(root, "w2"), wakes // 2, False), 1.0, 5.0),
               ("reference: blocking get() in a thread, same put",
                wake_blocking(os.path.join(root, "w2b"), wakes // 2, True), None, None),
               ("put by a client process (this one the holder)",
                wake_across(os.path.join(root, "w3"), wakes // 2, True), 1.0, 5.0)]
        waiters = idle(os.path.join(root, "idle"), 10_000)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    targets = {"enqueue": 0.7, "dequeue": 0.7, "dequeue(block)": 0.7,
               "enqueue_many(100)": 0.9, "dequeue_many(100)": 0.9}
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, N = {n}, "
          f"{rounds} rounds, {wakes} wake-ups")
    print()
    print("| case | await (ops/s) | blocking (ops/s) | async / blocking, wall | "
          "async / blocking, CPU | target | met (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for case, a, b, wall_ratio, cpu_ratio in tp:
        target = targets[case]
        print(f"| {case} | {a:,.0f} | {b:,.0f} | {wall_ratio:.2f}x | {cpu_ratio:.2f}x | "
              f">= {target}x | {'yes' if cpu_ratio >= target else 'NO'} |")
    print()
    print("| wake-up of a task awaiting get() | p50 | p99 | target p50 / p99 | met |")
    print("|---|---|---|---|---|")
    for name, waits, t50, t99 in lat:
        p50, p99 = pct(waits, 50) * 1e3, pct(waits, 99) * 1e3
        if t50 is None or t99 is None:
            print(f"| {name} | {p50:.3f} ms | {p99:.3f} ms | - | - |")
            continue
        met = p50 <= t50 and p99 <= t99
        print(f"| {name} | {p50:.3f} ms | {p99:.3f} ms | <= {t50} / {t99} ms | "
              f"{'yes' if met else 'NO'} |")
    print()
    print("| 10,000 tasks awaiting get() | threads added | RSS added | CPU while idle, 1 s |")
    print("|---|---|---|---|")
    for name, threads, mb, cpu_ms in waiters:
        print(f"| {name} | {threads} | {mb:.1f} MB | {cpu_ms:.1f} ms |")


if __name__ == "__main__":
    main()
