#!/usr/bin/env python
"""Dramatiq on a diskqueue directory beside Dramatiq on a local redis-server, same run.

    python benchmarks/dramatiq_redis.py [--quick] [--rounds R] [--n N] [--kill-n K]

Needs the ``dramatiq`` and ``test`` extras (dramatiq, redis) and Debian's
``redis-server``, which the script starts on 127.0.0.1 and a free port, without
persistence. Each case runs in child processes of its own, rounds interleaved (the order
of the two brokers flips every round); median and p90 shown, and the median over rounds
of diskqueue's figure / Redis's in the same round.

- enqueue: one producer process calling ``actor.send(i)`` N times (diskqueue: the
  producer opens the directory and holds it; Redis: a client over TCP).
- enqueue beside a holder: the same while another process holds the broker (diskqueue:
  the producer is a client of the holder over the directory's socket, as a web app
  beside running workers would be; Redis: the same as above).
- drain: N no-op messages queued, then a process with an in-process ``dramatiq.Worker``
  of 4 threads, timed from its start until ``broker.join(queue)`` returns (polling every
  10 ms on both brokers).
- drain by the CLI: the same messages (their actor appends a line to a log), then
  ``dramatiq app:broker --processes 2 --threads 2``, timed from its start (start-up
  included) until the log holds N lines. On diskqueue one worker process holds the
  directory and the other is its client.
- kill: K messages whose actor sleeps 1 ms and logs its argument; ``dramatiq app:broker
  --processes 2 --threads 2`` is SIGKILLed (every process) once a third have run, a new
  one started, and the log read after the queue has been idle for 5 s (at most 60 s):
  "lost" is how many of the K never ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FULL = dict(n=20_000, kill_n=3_000, rounds=3)
QUICK = dict(n=5_000, kill_n=1_000, rounds=2)
THREADS = 4
# diskqueue / Redis, at least
TARGETS = {"enqueue": 1.5, "enqueue_held": 1.5, "drain": 1.0, "drain_cli": 1.0}

APP = '''
import os, time
import dramatiq

BROKER = os.environ["BENCH_BROKER"]
if BROKER.startswith("redis://"):
    from dramatiq.brokers.redis import RedisBroker
    broker = RedisBroker(url=BROKER)
else:
    from diskqueue.contrib.dramatiq import DiskQueueBroker
    broker = DiskQueueBroker(BROKER)
dramatiq.set_broker(broker)

@dramatiq.actor(max_retries=0)
def noop(i):
    pass

@dramatiq.actor(max_retries=0)
def tick(i):
    fd = os.open(os.environ["BENCH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"%08d\\n" % i)   # fixed width: the log's size counts the runs
    os.close(fd)

@dramatiq.actor(max_retries=0)
def logged(i):
    time.sleep(0.001)
    fd = os.open(os.environ["BENCH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"%d\\n" % i)
    os.close(fd)
'''

CHILD = {
    # Holds the broker (diskqueue: becomes the directory's owner) until killed.
    "hold": """
        import sys, time, app
        app.broker.declare_queue("default")
        print("ready", flush=True)
        time.sleep(3600)
    """,
    "enqueue": """
        import json, sys, time, app
        n = int(sys.argv[1])
        t = time.perf_counter()
        for i in range(n):
            app.noop.send(i)
        print(json.dumps(n / (time.perf_counter() - t)))
    """,
    "fill": """
        import sys, app
        actor = getattr(app, sys.argv[2])
        for i in range(int(sys.argv[1])):
            actor.send(i)
    """,
}


def _child_drain(n: int) -> None:
    """Runs in a child: time a 4-thread worker over ``n`` queued messages."""
    import app  # type: ignore[import-not-found]
    import dramatiq

    app.broker.declare_queue("default")
    worker = dramatiq.Worker(app.broker, worker_threads=THREADS, worker_timeout=100)
    start = time.perf_counter()
    worker.start()
    app.broker.join("default", interval=10)
    took = time.perf_counter() - start
    worker.stop()
    print(json.dumps(n / took))


def _env(broker: str, work: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([work, ROOT, env.get("PYTHONPATH", "")])
    env["BENCH_BROKER"] = broker
    env["BENCH_LOG"] = os.path.join(work, "done.log")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _py(env: dict[str, str], code: str, *args: str, timeout: float = 600) -> str:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                          cwd=env["PYTHONPATH"].split(os.pathsep)[0], check=True,
                          capture_output=True, text=True, timeout=timeout).stdout


def _fresh(subject: str, redis_url: str, base: str) -> tuple[str, dict[str, str]]:
    """A fresh working directory and broker for one run."""
    work = tempfile.mkdtemp(dir=base)
    with open(os.path.join(work, "app.py"), "w") as f:
        f.write(APP)
    if subject == "redis":
        import redis

        redis.Redis.from_url(redis_url).flushall()
        return work, _env(redis_url, work)
    return work, _env(os.path.join(work, "q"), work)


def enqueue(env: dict[str, str], n: int) -> float:
    return float(_py(env, CHILD["enqueue"], str(n)))


def enqueue_held(env: dict[str, str], n: int) -> float:
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD["hold"])],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        return float(_py(env, CHILD["enqueue"], str(n)))
    finally:
        holder.kill()
        holder.wait()


def drain(env: dict[str, str], n: int) -> float:
    _py(env, CHILD["fill"], str(n), "noop")
    code = f"import sys; sys.path.insert(0, {ROOT!r}); " \
           "from benchmarks.dramatiq_redis import _child_drain; _child_drain(int(sys.argv[1]))"
    return float(_py(env, code, str(n)))


def drain_cli(env: dict[str, str], n: int) -> float:
    """``dramatiq app:broker --processes 2 --threads 2`` over ``n`` queued messages, timed
    from its start (process start-up included) until the last message has run."""
    _py(env, CHILD["fill"], str(n), "tick")
    log = env["BENCH_LOG"]
    start = time.perf_counter()
    worker = _dramatiq(env)
    try:
        while not os.path.exists(log) or os.path.getsize(log) < 9 * n:
            if time.perf_counter() - start > 600:
                raise RuntimeError("the workers did not finish in 10 minutes")
            time.sleep(0.01)
        return n / (time.perf_counter() - start)
    finally:
        _stop(worker)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def _ran(log: str) -> list[int]:
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [int(line) for line in f.read().split("\n") if line]


def _dramatiq(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["dramatiq", "app:broker", "--processes", "2", "--threads", "2"],
                            env=env, cwd=env["PYTHONPATH"].split(os.pathsep)[0],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill(env: dict[str, str], k: int) -> float:
    """Messages lost when every worker process is SIGKILLed a third of the way in."""
    log = env["BENCH_LOG"]
    _py(env, CHILD["fill"], str(k), "logged")
    worker = _dramatiq(env)
    try:
        deadline = time.monotonic() + 120
        while len(_ran(log)) < k // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        worker = _dramatiq(env)
        seen, still, deadline = -1, time.monotonic(), time.monotonic() + 60
        while time.monotonic() < deadline and time.monotonic() - still < 5:
            now = len(set(_ran(log)))
            if now != seen:
                seen, still = now, time.monotonic()
            if now == k:
                break
            time.sleep(0.1)
    finally:
        _stop(worker)
    return float(k - len(set(_ran(log))))


CASES = {"enqueue": enqueue, "enqueue_held": enqueue_held, "drain": drain,
         "drain_cli": drain_cli, "kill": kill}


def _start_redis(base: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save",
                               "", "--appendonly", "no", "--dir", base],
                              stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return server, f"redis://127.0.0.1:{port}/0"


def run(sizes: dict[str, int]) -> dict[tuple[str, str], list[float]]:
    base = tempfile.mkdtemp(prefix="dq-dramatiq-bench-")
    server, url = _start_redis(base)
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for r in range(sizes["rounds"]):
            for case, fn in CASES.items():
                n = sizes["kill_n"] if case == "kill" else sizes["n"]
                order = ("diskqueue", "redis") if r % 2 == 0 else ("redis", "diskqueue")
                for subject in order:
                    work, env = _fresh(subject, url, base)
                    value = fn(env, n)
                    shutil.rmtree(work, ignore_errors=True)
                    results.setdefault((subject, case), []).append(value)
                    print(f"round {r + 1} {case:12s} {subject:9s} {value:,.0f}",
                          file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(base, ignore_errors=True)
    return results


def _p90(values: list[float]) -> float:
    """The slow side of a rate: the rate that 90% of the rounds reached."""
    ordered = sorted(values)
    return ordered[int(0.1 * (len(ordered) - 1))]


def table(results: dict[tuple[str, str], list[float]], sizes: dict[str, int]) -> str:
    rows = ["| case | diskqueue median | diskqueue p90 | Redis median | Redis p90 "
            "| diskqueue / Redis | target |", "|---|---|---|---|---|---|---|"]
    names = {"enqueue": "enqueue, producer holds the directory",
             "enqueue_held": "enqueue, producer a client of a holder",
             "drain": "drain, one process, 4 threads",
             "drain_cli": "drain, `dramatiq` 2 processes x 2 threads"}
    for case, unit in (("enqueue", "msgs/s"), ("enqueue_held", "msgs/s"), ("drain", "msgs/s"),
                       ("drain_cli", "msgs/s"), ("kill", "lost")):
        dq_values, redis_values = results[("diskqueue", case)], results[("redis", case)]
        if case == "kill":
            rows.append(f"| SIGKILL mid-drain, {sizes['kill_n']:,} msgs | "
                        f"{max(dq_values):.0f} lost (worst) | - | "
                        f"{max(redis_values):.0f} lost (worst) | - | - | 0 lost |")
            continue
        ratio = statistics.median(a / b for a, b in zip(dq_values, redis_values, strict=True))
        met = "met" if ratio >= TARGETS[case] else "NOT met"
        rows.append(
            f"| {names[case]}, {sizes['n']:,} msgs | {statistics.median(dq_values):,.0f} {unit} | "
            f"{_p90(dq_values):,.0f} | {statistics.median(redis_values):,.0f} {unit} | "
            f"{_p90(redis_values):,.0f} | {ratio:.2f}x | >= {TARGETS[case]}x ({met}) |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 2 rounds")
    parser.add_argument("--rounds", type=int, help="rounds per case")
    parser.add_argument("--n", type=int, help="messages per enqueue/drain run")
    parser.add_argument("--kill-n", type=int, help="messages per SIGKILL run")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    for key in ("rounds", "n", "kill_n"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    results = run(sizes)
    print(table(results, sizes))


if __name__ == "__main__":
    main()
