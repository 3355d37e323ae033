"""The demo: jobs in a directory, a worker killed mid-run, then drained: nothing lost.

Run it with ``python -m diskqueue.demo [DIRECTORY]``. It enqueues a few hundred jobs
(some fail and are retried, a few always fail and end dead, some are delayed), starts
``diskq-worker`` on them, kills it with SIGKILL part way, runs ``diskq-worker --drain``
(a progress bar on a terminal) and prints ``diskq stats``. This module is also the
demo's task app: ``diskq-worker DIR --app diskqueue.demo:tasks``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional, TextIO

from .tasks import Retry, TaskQueue, current_job_id

DIR_ENV = "DISKQ_DEMO_DIR"
tasks = TaskQueue(os.environ.get(DIR_ENV, "demo-jobs"))
LOG_ENV = "DISKQ_DEMO_LOG"


def _note(line: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


@tasks.task(retries=2, backoff=0.2)
def resize(image: int, ms: int) -> str:
    """A job that takes a few milliseconds."""
    time.sleep(ms / 1000)
    _note(f"done {current_job_id()}")
    return f"img-{image}.webp"


@tasks.task(retries=3, backoff=0.2)
def fetch(url: str) -> int:
    """Fails on its first attempt, then succeeds."""
    job = tasks.job(current_job_id() or "")
    if job.failures == 0:
        raise Retry(delay=0.3, message=f"{url}: connection reset (will retry)")
    _note(f"done {job.id}")
    return len(url)


@tasks.task(retries=2, backoff=0.1)
def broken(n: int) -> None:
    """Always fails: ends in the dead-letter set after three attempts."""
    _note(f"done {current_job_id()}")
    raise ValueError(f"record {n} is malformed")


def enqueue(path: str, rng: random.Random) -> dict[str, list[str]]:
    """Put the demo's jobs in ``path``; returns their ids by kind."""
    producer = TaskQueue(path)  # a producer knows the tasks by name only
    try:
        ids: dict[str, list[str]] = {"resize": [], "fetch": [], "broken": [], "delayed": []}
        jobs = producer.enqueue_many(
            "resize", [((i, rng.randint(2, 12)), {}) for i in range(250)])
        ids["resize"] = [j.id for j in jobs]
        ids["fetch"] = [producer.enqueue("fetch", f"https://example.com/{i}").id
                        for i in range(25)]
        ids["broken"] = [producer.enqueue("broken", i).id for i in range(5)]
        ids["delayed"] = [producer.apply("resize", (1000 + i, 5),
                                         delay=1 + rng.random()).id for i in range(20)]
        return ids
    finally:
        producer.close()


def _worker_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "diskqueue.cli.worker", "--app", "diskqueue.demo:tasks",
            "--log-level", "error", *extra]


def _worker_env(path: str, log: str) -> dict[str, str]:
    """The worker finds the directory the way an app does: through its own setting."""
    return dict(os.environ, **{LOG_ENV: log, DIR_ENV: path})


def _crash_one_worker(path: str, log: str, after: int, out: TextIO) -> None:
    """Start a worker, SIGKILL it once ``after`` jobs have run."""
    proc = subprocess.Popen(_worker_cmd(), env=_worker_env(path, log),
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(log) and open(log).read().count("\n") >= after:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = open(log).read().count("\n") if os.path.exists(log) else 0
    print(f"started diskq-worker, then killed it with SIGKILL after {done} runs", file=out)


def run(path: str, out: TextIO = sys.stdout, seed: int = 7) -> bool:
    """The whole demo; True when every job enqueued finished (success or dead)."""
    rng = random.Random(seed)
    ids = enqueue(path, rng)
    total = sum(len(v) for v in ids.values())
    print(f"enqueued {total} jobs into {path}: {len(ids['resize'])} resize, "
          f"{len(ids['fetch'])} fetch (fail once, then succeed), {len(ids['broken'])} "
          f"broken (always fail), {len(ids['delayed'])} delayed by 1-2 s", file=out)
    log = os.path.join(os.path.dirname(path) or ".", os.path.basename(path) + ".log")
    _crash_one_worker(path, log, 100, out)

    print(f"$ {DIR_ENV}={path} diskq-worker --app diskqueue.demo:tasks --drain", file=out,
          flush=True)
    drained = subprocess.run(_worker_cmd("--drain"), env=_worker_env(path, log))
    if drained.returncode != 0:
        print(f"diskq-worker --drain exited with {drained.returncode}", file=out)
        return False
    print(f"$ diskq stats {path}", file=out, flush=True)
    stats = subprocess.run([sys.executable, "-m", "diskqueue.cli", "stats", path],
                           capture_output=True, text=True)
    print(stats.stdout.rstrip(), file=out)
    return _verdict(path, ids, out)


def _verdict(path: str, ids: dict[str, list[str]], out: TextIO) -> bool:
    states: dict[str, int] = {}
    reran = 0
    missing = []
    with TaskQueue(path) as check:
        for job_id in (i for group in ids.values() for i in group):
            try:
                info: dict[str, Any] = check.job(job_id).info()
            except LookupError:
                missing.append(job_id)
                continue
            states[info["state"]] = states.get(info["state"], 0) + 1
            if info.get("attempts", 0) > info.get("failures", 0) + 1:
                reran += 1
    total = sum(len(v) for v in ids.values())
    finished = states.get("success", 0) + states.get("dead", 0)
    if missing or finished != total:
        print(f"LOST: {len(missing)} jobs missing, {total - finished - len(missing)} "
              f"unfinished", file=out)
        return False
    print(f"nothing lost: {finished} of {total} jobs finished ({states.get('success', 0)} "
          f"succeeded, {states.get('dead', 0)} dead after 3 attempts); {reran} ran again "
          f"because the kill cut them short", file=out)
    return True


def main(argv: Optional[list[str]] = None) -> int:
    """Run the demo in ``PATH`` (default: a new temporary directory); 0 when nothing was
    lost, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m diskqueue.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", help="task directory (default: a new temp dir)")
    args = parser.parse_args(argv)
    path = args.path or os.path.join(tempfile.mkdtemp(prefix="diskqueue-demo-"), "jobs")
    return 0 if run(os.path.abspath(path)) else 1


if __name__ == "__main__":
    sys.exit(main())
