#!/usr/bin/env python
"""The dashboard's benchmark: how fast its page loads on a big directory, and what an
open page costs a worker.

    python benchmarks/dashboard.py [--quick] [--jobs N] [--dead N] [--drain N] [--rounds R]

Cases (progress to stderr, the table to stdout):

- page load: a directory holding ``--jobs`` queued jobs (1M) and ``--dead`` dead letters
  (10k), held by a worker process (serving another queue, so the backlog stays); the
  dashboard (``diskq dashboard``) is its client. Measured in headless Chromium when it is
  installed: from navigation until the queue table and the first page of dead letters
  are drawn; and over plain HTTP: the page, the overview and the first page of dead
  letters, one after another. Median and worst of the loads.
- sample cost: on that directory, the time one sample of the dashboard's sampler takes
  (every count read from the worker, over its socket), against the 5 s between two
  samples: what the dashboard asks of the worker, whatever the number of open pages.
- drain cost: one worker process (4 threads) drains ``--drain`` no-op jobs, round after
  round, alternately with nothing else running and with the dashboard serving an open
  page (the browser polling it, or without a browser, a poller making the page's
  requests); jobs per second, and the ratio of the two in paired rounds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from typing import Any, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from diskqueue import TaskQueue  # noqa: E402
from diskqueue.web.sampler import INTERVAL, Sampler  # noqa: E402
from diskqueue.web.source import Source  # noqa: E402

APP = '''
import os
from diskqueue import TaskQueue

tasks = TaskQueue(os.environ["BENCH_DIR"])

@tasks.task(queue="default")
def noop(i):
    return None

@tasks.task(queue="broken", retries=0)
def broken(i):
    raise ValueError(f"record {i} is malformed")
'''
FULL = dict(jobs=1_000_000, dead=10_000, drain=300_000, rounds=4, loads=5)
QUICK = dict(jobs=100_000, dead=2_000, drain=30_000, rounds=2, loads=3)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Env:
    """A directory, the task module beside it, and the child processes started on it."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, "jobs")
        with open(os.path.join(root, "benchapp.py"), "w") as f:
            f.write(textwrap.dedent(APP))
        self.env = dict(os.environ, BENCH_DIR=self.path, PYTHONUNBUFFERED="1",
                        PYTHONPATH=os.pathsep.join([ROOT, root]))

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "diskqueue.cli.worker", self.path,
                                 "--app", "benchapp:tasks", *args], env=self.env, cwd=self.root,
                                stderr=subprocess.DEVNULL)

    def dashboard(self) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "diskqueue.cli", "dashboard", self.path,
                                 "--port", str(port)], env=self.env, cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if str(port) not in line:
            raise RuntimeError(f"the dashboard did not start: {line!r}")
        return proc, f"http://127.0.0.1:{port}/"


def stop(proc: Optional[subprocess.Popen[bytes]]) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=120)


def browser() -> Any:
    """A headless Chromium through Selenium, or None when either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        return None
    if not (chromium and driver):
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options,
                            service=webdriver.ChromeService(executable_path=driver))


def fill(env: Env, jobs: int, dead: int) -> None:
    """``jobs`` no-op jobs queued and ``dead`` dead letters, made by this process."""
    tasks = TaskQueue(env.path)
    tasks.task(queue="broken", retries=0, name="broken")(_broken)
    t0 = time.perf_counter()
    tasks.enqueue_many("broken", range(dead), queue="broken")
    worker = tasks.start(concurrency=4, queues=["broken"])
    while tasks.stats().get("broken", {}).get("dead", 0) < dead:
        time.sleep(0.2)
    worker.stop()
    for start in range(0, jobs, 20_000):
        tasks.enqueue_many("noop", range(start, min(start + 20_000, jobs)))
    tasks.close()
    say(f"filled: {jobs:,} queued, {dead:,} dead in {time.perf_counter() - t0:.1f} s")


def _broken(i: int) -> None:
    raise ValueError(f"record {i} is malformed")


def page_load(env: Env, loads: int) -> dict[str, list[float]]:
    # holds the directory, leaves the backlog ("idle=1": the weighted form of --queues)
    holder = env.worker("--queues", "idle=1")
    time.sleep(1.0)
    if holder.poll() is not None:
        raise RuntimeError("the worker holding the directory exited")
    dash, url = env.dashboard()
    out: dict[str, list[float]] = {"http": [], "browser": [], "sample": []}
    try:
        source = Source(env.path)  # a client of the worker, as the dashboard is
        sampler = Sampler(source)
        for _ in range(loads * 2):
            t0 = time.perf_counter()
            sampler.sample()
            out["sample"].append(time.perf_counter() - t0)
        source.close()
        for _ in range(loads):
            t0 = time.perf_counter()
            for path in ("", "static/dashboard.js", "api/overview", "api/dead"):
                with urllib.request.urlopen(url + path) as r:
                    r.read()
            out["http"].append(time.perf_counter() - t0)
        driver = browser()
        if driver is not None:
            try:
                for _ in range(loads):
                    driver.get("about:blank")
                    t0 = time.perf_counter()
                    driver.get(url)
                    while not driver.execute_script(
                            "return !!document.querySelector('#queues tr[data-queue=default]')"
                            " && document.querySelectorAll('#dead tbody tr').length >= 50"):
                        if time.perf_counter() - t0 > 60:
                            raise RuntimeError("the page did not load within 60 s")
                        time.sleep(0.005)
                    out["browser"].append(time.perf_counter() - t0)
            finally:
                driver.quit()
    finally:
        stop(dash)
        stop(holder)
    return out


def poller(url: str, stop_flag: threading.Event, interval: float) -> None:
    """The requests an open page makes, for when there is no browser."""
    last = None
    while not stop_flag.is_set():
        q = "" if last is None else f"?since={last}"
        with urllib.request.urlopen(url + "api/overview" + q) as r:
            samples = json.load(r)["samples"]
        if samples:
            last = samples[-1]["t"]
        stop_flag.wait(interval)


def drain_rounds(env: Env, n: int, rounds: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"alone": [], "page open": []}
    worker = env.worker("--concurrency", "4")
    time.sleep(1.0)
    tasks = TaskQueue(env.path)  # a client of the worker, as any producer
    driver = browser()
    try:
        for r in range(rounds * 2):
            arm = "page open" if (r % 2 == 1) ^ (r // 2 % 2 == 1) else "alone"
            dash = None
            stop_flag = threading.Event()
            if arm == "page open":
                dash, url = env.dashboard()
                if driver is not None:
                    driver.get(url)
                else:
                    threading.Thread(target=poller, args=(url, stop_flag, 5.0),
                                     daemon=True).start()
            before = tasks.stats().get("default", {}).get("done", 0)
            for start in range(0, n, 20_000):
                tasks.enqueue_many("noop", range(start, min(start + 20_000, n)))
            t0 = time.perf_counter()
            while True:
                s = tasks.stats()["default"]
                if s["done"] - before >= n:
                    break
                time.sleep(0.05)
            rate = n / (time.perf_counter() - t0)
            rates[arm].append(rate)
            say(f"round {r + 1}: {arm}: {rate:,.0f} jobs/s")
            stop_flag.set()
            if driver is not None:
                driver.get("about:blank")
            stop(dash)
    finally:
        if driver is not None:
            driver.quit()
        tasks.close()
        stop(worker)
    return rates


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    parser.add_argument("--jobs", type=int,
                        help="jobs queued for the page load (1M; 0: skip the page load)")
    parser.add_argument("--dead", type=int, help="dead letters for the page load (10k)")
    parser.add_argument("--drain", type=int,
                        help="jobs drained per round (300k; 0: skip the drain rounds)")
    parser.add_argument("--rounds", type=int, help="rounds of each arm (4)")
    args = parser.parse_args(argv)
    logging.getLogger("diskqueue").setLevel(logging.ERROR)  # the dead letters it makes
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("jobs", "dead", "drain", "rounds"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    root = tempfile.mkdtemp(prefix="dq-dash-")
    try:
        env = Env(root)
        loads: dict[str, list[float]] = {}
        if cfg["jobs"]:  # --jobs 0: only the drain rounds
            fill(env, cfg["jobs"], cfg["dead"])
            loads = page_load(env, cfg["loads"])
            shutil.rmtree(env.path)
        rates = drain_rounds(env, cfg["drain"], cfg["rounds"]) if cfg["drain"] else {}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("| case | median | worst | target |\n|---|---|---|---|")
    sample = loads.pop("sample", [])
    if sample:
        print(f"| one sample of every count, {cfg['jobs']:,} queued, {cfg['dead']:,} dead | "
              f"{statistics.median(sample) * 1000:.1f} ms | {max(sample) * 1000:.1f} ms | |")
        print(f"| the same, as a share of the {INTERVAL:g} s between samples | "
              f"{statistics.median(sample) / INTERVAL:.2%} | {max(sample) / INTERVAL:.2%} "
              f"| < 2% |")
    for kind, times in loads.items():
        if times:
            print(f"| page load, {kind}, {cfg['jobs']:,} queued, {cfg['dead']:,} dead | "
                  f"{statistics.median(times) * 1000:.0f} ms | {max(times) * 1000:.0f} ms "
                  f"| < 1000 ms |")
    if not rates:
        return 0
    for arm, values in rates.items():
        print(f"| drain, 4 threads, {arm} | {statistics.median(values):,.0f} jobs/s | "
              f"{min(values):,.0f} | |")
    ratios = [b / a for a, b in zip(rates["alone"], rates["page open"], strict=True)]
    print(f"| drain with a page open / alone (paired rounds) | "
          f"{statistics.median(ratios):.3f} | {min(ratios):.3f} | >= 0.98 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
