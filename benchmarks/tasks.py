#!/usr/bin/env python
"""The task layer's benchmark: no-op jobs, 4 worker threads, beside huey (SqliteHuey)
doing the same work in the same run.

    python benchmarks/tasks.py [--quick] [--rounds R] [--rss-jobs N] [--no-huey]

Cases (each in a child process of its own and a fresh temporary directory, rounds
interleaved, median and p90 shown):

- enqueue: one producer calling ``fn.delay(i)`` (huey: ``fn(i)``), jobs per second, and
  the CPU time per call (all threads of the process, LevelDB's own included);
- enqueue_many: the same in batches of 100 (huey has no bulk enqueue: not run);
- plyvel put: the floor under a one-at-a-time enqueue: one raw LevelDB put per job of a
  record of the same size, no queue item, no pointer;
- drain: a worker with 4 threads started on N queued no-op jobs, until the last one ran
  (end to end: fetch, run, store the outcome), jobs per second, and the CPU time the
  worker process spent per job (all its threads: the steadier figure on a shared machine);
- drain, 1 and 2 processes: the same N jobs drained by one worker process, then by two
  started together on the same directory (the second a client of the first's), 4 threads
  each, from the moment they start their workers until both saw the queue empty; then
  the same with N/20 jobs that each spin 1 ms of Python (the holder keeps short jobs to
  itself: the second process takes jobs whose calls are long);
- drain, client: N/4 jobs drained by a worker process (4 threads) that is a client of
  another process holding the directory (which runs no worker), and the CPU time per
  job of each of the two processes;
- sleep 1 ms, 32 threads: N jobs that each ``time.sleep(0.001)``, 32 worker threads (the
  ceiling is 32,000 jobs/s);
- python (a model, no diskqueue): 32 plain threads whose jobs are a 1 ms sleep then 30 us of
  Python, as is and with that Python broken by two calls that let go of the GIL (as the
  LevelDB read and write of a job do): what the GIL alone allows the sleep case;
- latency: an idle worker (4 threads), one job enqueued every 2 ms; time from the
  enqueue call to the task's first line, p50 and p99 in ms;
- rss: a worker process started on a directory holding 10k jobs, and on one holding
  ``--rss-jobs`` (1M by default); its RSS and its Python heap (tracemalloc) after running
  5k of them (diskqueue only). The heap must not grow; RSS also holds LevelDB's own
  bounded caches (open tables, block cache), which grow a little with the database.

huey runs with the settings that favour it: SqliteHuey with results off where not needed,
a thread consumer with 4 workers, polling from 1 ms up to 10 ms when idle (its defaults
poll from 100 ms up to 10 s). Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import diskqueue as dq  # noqa: E402

try:
    import huey as huey_mod
except ImportError:  # pip install -e '.[bench]'
    huey_mod = None

THREADS = 4
FULL = dict(n=100_000, rounds=5, lat_jobs=1000, rss_jobs=1_000_000)
QUICK = dict(n=20_000, rounds=3, lat_jobs=300, rss_jobs=100_000)
SLEEP_THREADS = 32
TARGETS = {
    ("diskqueue", "enqueue"): (">=", 100_000),
    ("diskqueue", "enqueue_many"): (">=", 300_000),
    ("diskqueue", "drain"): (">=", 25_000),
    ("diskqueue", "drain, 2 processes"): (">=", 1.6, "drain, 1 process"),
    ("diskqueue", "drain 1 ms CPU jobs, 2 processes"): (">=", 1.0,
                                                        "drain 1 ms CPU jobs, 1 process"),
    ("diskqueue", "sleep 1 ms, 32 threads"): (">=", 0.8 * 1000 * SLEEP_THREADS),
    ("diskqueue", "latency p50"): ("<=", 1.0),
    ("diskqueue", "latency p99"): ("<=", 2.0),
}
UNITS = {"latency p50": "ms", "latency p99": "ms", "drain CPU": "us/job",
         "sleep 1 ms CPU": "us/job", "enqueue CPU": "us/job", "enqueue_many CPU": "us/job",
         "drain, client CPU": "us/job", "drain, client: holder CPU": "us/job",
         "sleep 1 ms + 30 us CPU": "us/job", "the same, 2 GIL releases, CPU": "us/job"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fresh() -> str:
    return tempfile.mkdtemp(prefix="dqtasks-")


# -- diskqueue ------------------------------------------------------------------------------
def dq_queue(d: str) -> tuple[Any, Any, list[float]]:
    tasks = dq.TaskQueue(os.path.join(d, "jobs"), middleware=())
    marks: list[float] = []

    @tasks.task(result_ttl=0)
    def noop(i: int) -> None:
        return None

    @tasks.task(result_ttl=0)
    def stamp(t0: float) -> None:
        marks.append(time.perf_counter() - t0)

    @tasks.task(result_ttl=0)
    def nap(i: int) -> None:
        time.sleep(0.001)

    return tasks, (noop, stamp, nap), marks


def dq_fill(tasks: Any, name: str, n: int) -> None:
    for k in range(0, n, 1000):
        tasks.enqueue_many(name, [((i,), {}) for i in range(k, min(k + 1000, n))])


def dq_enqueue(d: str, n: int) -> dict[str, float]:
    tasks, (noop, _, _), _ = dq_queue(d)
    noop.delay(0)  # opens the directory
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        noop.delay(i)
    one, one_cpu = n / (time.perf_counter() - t0), (time.process_time() - c0) / n
    c0, t0 = time.process_time(), time.perf_counter()
    for k in range(0, n, 100):
        tasks.enqueue_many("noop", [((i,), {}) for i in range(k, k + 100)])
    many, many_cpu = n / (time.perf_counter() - t0), (time.process_time() - c0) / n
    tasks.close()
    return {"enqueue": one, "enqueue CPU": one_cpu * 1e6, "enqueue_many": many,
            "enqueue_many CPU": many_cpu * 1e6}


def raw_put(d: str, n: int) -> dict[str, float]:
    """One plyvel put per job, of a record the size of a no-op job's."""
    try:
        import plyvel
    except ImportError:  # Python 3.12+
        import plyvel_next as plyvel
    from diskqueue.tasks import layout
    size = len(layout.pack(layout.new_record("0123456789000001", "noop", [n], {}, "default",
                                             0, time.time())))
    db = plyvel.DB(os.path.join(d, "raw"), create_if_missing=True)
    value = b"v" * size
    gc.collect()
    t0 = time.perf_counter()
    for i in range(n):
        db.put(b"job%016x" % i, value)
    rate = n / (time.perf_counter() - t0)
    db.close()
    return {"put, one job record": rate}


def _drained(d: str, name: str, n: int, threads: int) -> tuple[float, float]:
    """Jobs per second and CPU seconds per job of one worker draining ``n`` jobs."""
    tasks, _, _ = dq_queue(d)
    dq_fill(tasks, name, n)
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    worker = tasks.start(concurrency=threads)
    while worker.finished < n:  # the worker's own count of finished jobs
        time.sleep(0.01)  # (waking more often would take the GIL from the workers)
    rate = n / (time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / n
    worker.stop()
    tasks.close()
    return rate, cpu


def dq_drain(d: str, n: int) -> dict[str, float]:
    rate, cpu = _drained(d, "noop", n, THREADS)
    return {"drain": rate, "drain CPU": cpu * 1e6}


def dq_sleep(d: str, n: int) -> dict[str, float]:
    rate, cpu = _drained(d, "nap", n, SLEEP_THREADS)
    return {f"sleep 1 ms, {SLEEP_THREADS} threads": rate, "sleep 1 ms CPU": cpu * 1e6}


def _modelled(n: int, calls: int) -> tuple[float, float]:
    """Jobs/s and CPU seconds per job of ``SLEEP_THREADS`` plain threads, each job a 1 ms
    sleep then 30 us of Python, broken by ``calls`` calls that let go of the GIL."""
    left = [n]
    lock = threading.Lock()
    piece = 30e-6 / (calls + 1)

    def spin(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    def body() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            time.sleep(0.001)
            spin(piece)
            for _ in range(calls):
                time.sleep(0)  # lets go of the GIL, as a LevelDB call does
                spin(piece)

    threads = [threading.Thread(target=body) for _ in range(SLEEP_THREADS)]
    c0, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n


def model_sleep(d: str, n: int) -> dict[str, float]:
    """No diskqueue: what the GIL alone lets 32 threads of 1 ms sleeps do."""
    plain, plain_cpu = _modelled(n, 0)
    broken, broken_cpu = _modelled(n, 2)
    return {"sleep 1 ms + 30 us, 32 threads": plain, "sleep 1 ms + 30 us CPU": plain_cpu * 1e6,
            "the same, 2 GIL releases": broken,
            "the same, 2 GIL releases, CPU": broken_cpu * 1e6}


DRAIN_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[2])
import diskqueue as dq
tasks = dq.TaskQueue(sys.argv[1], middleware=())

@tasks.task(result_ttl=0)
def noop(i):
    return None

@tasks.task(result_ttl=0)
def spin(i):
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass

tasks.stats()  # opens the directory (the second process: as a client of the first)
print("ready", flush=True)
sys.stdin.readline()
worker = tasks.start(concurrency=int(sys.argv[3]))
worker.wait_idle()
end = time.time()
worker.stop()
tasks.close()
print(end, flush=True)
"""


def _drained_by(d: str, n: int, procs: int, task: str = "noop") -> float:
    """Jobs per second of ``procs`` worker processes draining ``n`` jobs together."""
    path = os.path.join(d, "jobs")
    with dq.TaskQueue(path) as tasks:
        dq_fill(tasks, task, n)
    children = []
    for _ in range(procs):
        child = subprocess.Popen([sys.executable, "-c", DRAIN_CHILD, path, ROOT, str(THREADS)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        children.append(child)
    t0 = time.time()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    ends = [float(child.communicate()[0].split()[-1]) for child in children]
    return n / (max(ends) - t0)


def dq_drain_procs(d: str, n: int) -> dict[str, float]:
    one = _drained_by(os.path.join(d, "one"), n, 1)
    two = _drained_by(os.path.join(d, "two"), n, 2)
    spin_one = _drained_by(os.path.join(d, "spin-one"), n // 20, 1, "spin")
    spin_two = _drained_by(os.path.join(d, "spin-two"), n // 20, 2, "spin")
    return {"drain, 1 process": one, "drain, 2 processes": two,
            "drain 1 ms CPU jobs, 1 process": spin_one,
            "drain 1 ms CPU jobs, 2 processes": spin_two}


HOLDER_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[2])
import diskqueue as dq
tasks = dq.TaskQueue(sys.argv[1], middleware=())
tasks.stats()  # opens the directory: this process holds it
print("ready", flush=True)
sys.stdin.readline()
c0 = time.process_time()
sys.stdin.readline()
print(time.process_time() - c0, flush=True)
"""


def dq_drain_client(d: str, n: int) -> dict[str, float]:
    """A worker that is a client (another process holds the directory and runs no
    worker) drains ``n`` jobs: its rate, and the CPU per job of both processes."""
    tasks, _, _ = dq_queue(d)
    dq_fill(tasks, "noop", n)
    tasks.close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_CHILD, tasks.path, ROOT],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    assert holder.stdout.readline().strip() == "ready"
    tasks, _, _ = dq_queue(d)
    tasks.stats()  # opens the directory, as a client
    assert tasks.store.engine().role == "client"
    holder.stdin.write("go\n")
    holder.stdin.flush()
    c0, t0 = time.process_time(), time.perf_counter()
    worker = tasks.start(concurrency=THREADS)
    while worker.finished < n:
        time.sleep(0.01)
    rate = n / (time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / n
    holder.stdin.write("done\n")
    holder.stdin.flush()
    held = float(holder.communicate()[0].split()[-1]) / n
    worker.stop()
    tasks.close()
    return {"drain, client": rate, "drain, client CPU": cpu * 1e6,
            "drain, client: holder CPU": held * 1e6}


def dq_latency(d: str, jobs: int) -> dict[str, float]:
    tasks, (_, stamp, _), marks = dq_queue(d)
    worker = tasks.start(concurrency=THREADS)
    time.sleep(0.3)  # idle
    for _ in range(jobs):
        stamp.delay(time.perf_counter())
        time.sleep(0.002)
    deadline = time.monotonic() + 10
    while len(marks) < jobs and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    tasks.close()
    return percentiles(marks)


RSS_CHILD = """
import os, sys, time, tracemalloc
tracemalloc.start()
sys.path.insert(0, sys.argv[2])
import diskqueue as dq
tasks = dq.TaskQueue(sys.argv[1])

@tasks.task(result_ttl=0)
def noop(i):
    return None

worker = tasks.start(concurrency=4)
while worker.finished < 5_000:
    time.sleep(0.01)
with open("/proc/self/statm") as fh:
    rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
heap = tracemalloc.get_traced_memory()[0]
worker.stop()
tasks.close()
print(rss, heap)
"""


def dq_rss(d: str, queued: int) -> dict[str, float]:
    """A worker process's RSS and Python heap (MB, tracemalloc) after running 5k of
    ``queued`` jobs."""
    path = os.path.join(d, "jobs")
    with dq.TaskQueue(path) as tasks:
        for k in range(0, queued, 5000):
            tasks.enqueue_many("noop", [((i,), {}) for i in range(k, min(k + 5000, queued))])
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, path, ROOT], capture_output=True,
                         text=True, check=True)
    rss, heap = out.stdout.split()[-2:]
    return {"rss": int(rss) / 2**20, "heap": int(heap) / 2**20}


# -- huey -----------------------------------------------------------------------------------
class HueyRig:
    """A SqliteHuey with the same two tasks, and an in-process thread consumer."""

    def __init__(self, d: str) -> None:
        from huey import SqliteHuey

        self.huey = SqliteHuey("bench", filename=os.path.join(d, "huey.db"), results=False)
        self.marks: list[float] = []
        self.done = 0
        self._lock = threading.Lock()
        marks = self.marks

        @self.huey.task()
        def noop(i: int) -> None:
            with self._lock:
                self.done += 1

        @self.huey.task()
        def stamp(t0: float) -> None:
            marks.append(time.perf_counter() - t0)

        self.noop, self.stamp = noop, stamp
        self.consumer: Any = None

    def start(self) -> None:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM,
                                                     signal.SIGHUP)}
        self.consumer = self.huey.create_consumer(
            workers=THREADS, worker_type="thread", periodic=False, initial_delay=0.001,
            backoff=1.15, max_delay=0.01, check_worker_health=False)
        self.consumer.start()
        self._previous = previous

    def stop(self) -> None:
        self.consumer.stop(graceful=True)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.huey.storage.close()


def huey_enqueue(d: str, n: int) -> dict[str, float]:
    rig = HueyRig(d)
    rig.noop(0)
    gc.collect()
    t0 = time.perf_counter()
    for i in range(n):
        rig.noop(i)
    rate = n / (time.perf_counter() - t0)
    rig.huey.storage.close()
    return {"enqueue": rate}


def huey_drain(d: str, n: int) -> dict[str, float]:
    rig = HueyRig(d)
    for i in range(n):
        rig.noop(i)
    gc.collect()
    t0 = time.perf_counter()
    rig.start()
    while rig.done < n:
        time.sleep(0.01)
    rate = n / (time.perf_counter() - t0)
    rig.stop()
    return {"drain": rate}


def huey_latency(d: str, jobs: int) -> dict[str, float]:
    rig = HueyRig(d)
    rig.start()
    time.sleep(0.3)
    for _ in range(jobs):
        rig.stamp(time.perf_counter())
        time.sleep(0.002)
    deadline = time.monotonic() + 10
    while len(rig.marks) < jobs and time.monotonic() < deadline:
        time.sleep(0.01)
    rig.stop()
    return percentiles(rig.marks)


# -- harness --------------------------------------------------------------------------------
def percentiles(samples: list[float]) -> dict[str, float]:
    xs = sorted(samples)
    if not xs:
        return {"latency p50": float("nan"), "latency p99": float("nan")}
    return {"latency p50": xs[len(xs) // 2] * 1000,
            "latency p99": xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000}


def run_case(fn: Callable[[str, int], dict[str, float]], size: int) -> dict[str, float]:
    """Run one case in a child process of its own (a fresh heap, no threads or caches
    left by the cases before it) in a fresh directory; return its figures."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--case", fn.__name__,
                          "--size", str(size)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"case {fn.__name__} failed:\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def _run_here(name: str, size: int) -> None:
    d = fresh()
    try:
        print(json.dumps(globals()[name](d, size)))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def measure(subjects: dict[str, list[tuple[Callable[..., dict[str, float]], int]]],
            rounds: int) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for cases in subjects.values():  # warm-up at a tenth of the size
        for fn, size in cases:
            run_case(fn, max(size // 10, 100))
    for r in range(rounds):
        order = list(subjects) if r % 2 == 0 else list(reversed(subjects))
        for name in order:
            for fn, size in subjects[name]:
                log(f"round {r + 1}/{rounds}: {name} {fn.__name__}")
                for metric, value in run_case(fn, size).items():
                    out.setdefault((name, metric), []).append(value)
    return out


def p90(vals: list[float], higher_is_better: bool) -> float:
    xs = sorted(vals, reverse=higher_is_better)
    return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]


def table(results: dict[tuple[str, str], list[float]], rss: dict[str, float]) -> str:
    lines = ["| subject | case | median | p90 | unit | target | ok |",
             "|---|---|---|---|---|---|---|"]
    for (name, metric), vals in results.items():
        unit = UNITS.get(metric, "jobs/s")
        med = statistics.median(vals)
        slow = p90(vals, unit == "jobs/s")
        target = TARGETS.get((name, metric))
        ok = ""
        text = ""
        if target:
            op, bound, *of = target
            if of:  # a ratio to another case of the same run
                ratio = med / statistics.median(results[(name, of[0])])
                good = ratio >= bound
                text, ok = f"{op} {bound:g}x {of[0]}", f"({ratio:.2f}x)"
            else:
                good = med >= bound if op == ">=" else med <= bound
                text = f"{op} {bound:,g} {unit}"
            ok = (("yes " if good else "NO ") + ok).strip()
        fmt = "{:,.0f}" if unit == "jobs/s" else "{:.2f}"
        lines.append(f"| {name} | {metric} | {fmt.format(med)} | {fmt.format(slow)} | {unit} "
                     f"| {text} | {ok} |")
    if ("huey", "drain") in results:
        ratio = (statistics.median(results[("diskqueue", "drain")])
                 / statistics.median(results[("huey", "drain")]))
        lines.append(f"| diskqueue | drain / huey drain | {ratio:.2f}x | | | >= 10x "
                     f"| {'yes' if ratio >= 10 else 'NO'} |")
    if rss:
        for what, key, bound in (("RSS", "", 1.5), ("Python heap", "_heap", 1.05)):
            small, big = rss["small" + key], rss["big" + key]
            lines.append(f"| diskqueue | worker {what}, {rss['small_n']:,} queued "
                         f"| {small:.1f} | | MB | | |")
            grew = big / small
            lines.append(f"| diskqueue | worker {what}, {rss['big_n']:,} queued | {big:.1f} "
                         f"| | MB | <= {bound}x the line above "
                         f"| {'yes' if grew <= bound else 'NO'} ({grew:.2f}x) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    parser.add_argument("--rounds", type=int, help="rounds per case (default: 5, quick: 3)")
    parser.add_argument("--rss-jobs", type=int, help="jobs queued for the big RSS run")
    parser.add_argument("--no-huey", action="store_true", help="skip huey")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        _run_here(args.case, args.size)
        return 0
    cfg = dict(QUICK if args.quick else FULL)
    rounds = args.rounds or cfg["rounds"]
    n, lat_jobs = cfg["n"], cfg["lat_jobs"]
    subjects = {"diskqueue": [(dq_enqueue, n), (dq_drain, n), (dq_drain_procs, n),
                              (dq_drain_client, n // 4), (dq_sleep, n), (dq_latency, lat_jobs)],
                "python": [(model_sleep, n)]}
    if not args.no_huey:
        if huey_mod is None:
            log("huey is not installed (pip install -e '.[bench]'): skipping it")
        else:
            subjects["huey"] = [(huey_enqueue, n), (huey_drain, n), (huey_latency, lat_jobs)]
    subjects["plyvel"] = [(raw_put, n)]
    results = measure(subjects, rounds)
    big_n = args.rss_jobs or cfg["rss_jobs"]
    log(f"rss: a worker on 10,000 and on {big_n:,} queued jobs")
    small, big = run_case(dq_rss, 10_000), run_case(dq_rss, big_n)
    rss = {"small_n": 10_000, "big_n": big_n, "small": small["rss"], "big": big["rss"],
           "small_heap": small["heap"], "big_heap": big["heap"]}
    print(textwrap.dedent(f"""\
        python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {rounds} rounds, N={n:,},
        {THREADS} worker threads, huey {getattr(huey_mod, '__version__', '-')}
        """))
    print(table(results, rss))
    return 0


if __name__ == "__main__":
    sys.exit(main())
