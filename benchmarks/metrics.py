#!/usr/bin/env python
"""What serving Prometheus metrics costs a worker: the drain rate of no-op jobs with 4
worker threads, without metrics and with ``metrics_port`` (the same code as
``diskq-worker --metrics-port``) while another process scrapes the endpoint once a
second, as Prometheus would (every 15 s by default: this is 15 times harsher).

    python benchmarks/metrics.py [--quick] [--rounds R] [--jobs N]

Each case runs in a child process of its own on a fresh directory, rounds interleaved
(the order flips every round), after a warm-up of each. Two figures per case: the drain
rate (wall clock), and the CPU time the worker process spent per job (all its threads,
the metrics server's included), which other load on a shared machine disturbs less.
Medians, p90 (the slower side) and the ratios of the medians go to stdout, progress to
stderr. The scrapes counted are checked: a run with none would measure nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import diskqueue as dq  # noqa: E402

THREADS = 4
FULL = dict(jobs=100_000, rounds=7)
QUICK = dict(jobs=20_000, rounds=3)
CASES = ("plain", "metrics")

SCRAPER = """
import sys, time, urllib.request
n = 0
while True:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=5).read()
    except OSError:
        break  # the worker stopped serving
    n += 1
    print(n, flush=True)
    time.sleep(1.0)
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def drain(d: str, jobs: int, with_metrics: bool) -> dict[str, float]:
    """Enqueue ``jobs`` no-op jobs, then time a worker running them all."""
    tasks = dq.TaskQueue(os.path.join(d, "jobs"))

    @tasks.task(result_ttl=0)
    def noop(i: int) -> None:
        return None

    for k in range(0, jobs, 1000):
        tasks.enqueue_many("noop", [((i,), {}) for i in range(k, min(k + 1000, jobs))])
    scraper = None
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    worker = tasks.start(concurrency=THREADS, metrics_port=0 if with_metrics else None)
    if with_metrics:
        scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, worker.metrics.url],
                                   stdout=subprocess.PIPE, text=True)
    while worker.finished < jobs:  # the worker's own count of finished jobs
        time.sleep(0.01)
    rate = jobs / (time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / jobs * 1e6
    worker.stop()  # closes the metrics server: the scraper ends
    scrapes = 0
    if scraper is not None:
        out, _ = scraper.communicate(timeout=30)
        scrapes = len(out.split())
    tasks.close()
    return {"rate": rate, "cpu": cpu, "scrapes": scrapes}


def run_case(case: str, jobs: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--case", case,
                          "--jobs", str(jobs)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k jobs, 3 rounds")
    parser.add_argument("--rounds", type=int, help="rounds of each case")
    parser.add_argument("--jobs", type=int, help="jobs drained per case")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    conf = dict(QUICK if args.quick else FULL)
    if args.rounds:
        conf["rounds"] = args.rounds
    if args.jobs:
        conf["jobs"] = args.jobs
    if args.case:
        d = tempfile.mkdtemp(prefix="dqmetrics-")
        try:
            print(json.dumps(drain(d, conf["jobs"], args.case == "metrics")))
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return 0
    for case in CASES:  # warm-up
        run_case(case, max(conf["jobs"] // 10, 1000))
    rates: dict[str, list[float]] = {case: [] for case in CASES}
    cpus: dict[str, list[float]] = {case: [] for case in CASES}
    scrapes: list[float] = []
    for r in range(conf["rounds"]):
        for case in CASES if r % 2 == 0 else reversed(CASES):
            log(f"round {r + 1}/{conf['rounds']}: {case}")
            got = run_case(case, conf["jobs"])
            rates[case].append(got["rate"])
            cpus[case].append(got["cpu"])
            if case == "metrics":
                scrapes.append(got["scrapes"])
    if not all(scrapes):
        raise RuntimeError("a metrics run was never scraped: it measured nothing")
    print(f"drain of {conf['jobs']:,} no-op jobs, {THREADS} threads, "
          f"{conf['rounds']} rounds (scrapes per metrics run: "
          f"{int(min(scrapes))} to {int(max(scrapes))})\n")
    print("| worker | drain, median | p90 | CPU per job, median | p90 |")
    print("|---|---|---|---|---|")
    for case, label in (("plain", "no metrics"),
                        ("metrics", "`metrics_port`, scraped every second")):
        xs, cs = sorted(rates[case]), sorted(cpus[case])
        slow = xs[max(0, int(round(0.1 * (len(xs) - 1))))]
        costly = cs[min(len(cs) - 1, int(round(0.9 * (len(cs) - 1))))]
        print(f"| {label} | {statistics.median(xs):,.0f} jobs/s | {slow:,.0f} "
              f"| {statistics.median(cs):.1f} us | {costly:.1f} |")
    rate = statistics.median(rates["metrics"]) / statistics.median(rates["plain"])
    cpu = statistics.median(cpus["metrics"]) / statistics.median(cpus["plain"])
    print(f"\nwith metrics / without: drain rate {rate:.3f}, CPU per job {cpu:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
