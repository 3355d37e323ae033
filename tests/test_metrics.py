"""Prometheus metrics of a real ``diskq-worker --metrics-port`` process, scraped over HTTP
and parsed with ``prometheus_client``'s parser, checked against the jobs it ran."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from diskqueue import DiskQueueError, JobTimeout, TaskQueue  # noqa: E402

try:
    from .test_tasks_support import env, until, write_app
except ImportError:
    from test_tasks_support import env, until, write_app

URL = re.compile(r"(http://127\.0\.0\.1:\d+/metrics)")

APP = '''
import os, time
from diskqueue import TaskQueue

tasks = TaskQueue(os.environ["DQ_TEST_JOBS"])
MARKS = os.environ["DQ_TEST_MARKS"]


@tasks.task()
def ok(n):
    return n


@tasks.task(retries=2, backoff=0.01)
def fails(n):
    raise ValueError(f"fails {n}")


@tasks.task(retries=3, backoff=0.01)
def once(n):
    # fails its first run, succeeds on the second
    mark = os.path.join(MARKS, f"once-{n}")
    if not os.path.exists(mark):
        open(mark, "w").close()
        raise RuntimeError(f"first run of {n}")
    return n


@tasks.task()
def fan(n):
    for i in range(n):
        ok.delay(100 + i)


@tasks.task()
def hold(name):
    # runs until the test creates the file ``name``
    start = time.monotonic()
    while not os.path.exists(os.path.join(MARKS, name)):
        time.sleep(0.01)
    return time.monotonic() - start
'''


class Scraped:
    """The samples of one scrape: ``value(name, **labels)`` adds up the samples of
    ``name`` whose labels include ``labels``."""

    def __init__(self, text: str) -> None:
        self.samples = [s for family in text_string_to_metric_families(text)
                        for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self.samples if s.name == name
                 and all(s.labels.get(k) == v for k, v in labels.items())]
        return sum(found)

    def has(self, name: str, **labels: str) -> bool:
        return any(s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
                   for s in self.samples)


def scrape(url: str) -> Scraped:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return Scraped(response.read().decode("utf-8"))


class Server:
    """A child process that logs or prints the URL it serves metrics on."""

    def __init__(self, argv: list[str], cwd: Path, extra: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env(**extra), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = until(self._url, 60, "the metrics URL in the output")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def _url(self) -> Any:
        assert self.proc.poll() is None, "".join(self.output)
        for line in list(self.output):
            match = URL.search(line)
            if match:
                return match.group(1)
        return None

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(60)
        self._reader.join(10)
        return code


def start_worker(tmp_path: Path, *args: str) -> tuple[Server, Path]:
    write_app(tmp_path, "metricsapp", APP)
    marks = tmp_path / "marks"
    marks.mkdir()
    path = tmp_path / "jobs"
    server = Server([sys.executable, "-m", "diskqueue.cli.worker", str(path), "--app",
                     "metricsapp:tasks", "--metrics-port", "0", *args], tmp_path,
                    {"DQ_TEST_MARKS": str(marks), "DQ_TEST_JOBS": str(path)})
    return server, marks


def finished(url: str, succeeded: int, dead: int) -> Any:
    """The scrape once the directory and the worker's hooks (which run just after the
    outcome is stored) both show every job finished; else None."""
    got = scrape(url)
    done = (got.value("diskqueue_queue_jobs_total", state="succeeded") == succeeded
            and got.value("diskqueue_jobs_total", state="succeeded") == succeeded
            and got.value("diskqueue_queue_dead") == dead
            and got.value("diskqueue_jobs_total", state="dead") == dead
            and got.value("diskqueue_queue_depth") == 0
            and got.value("diskqueue_queue_in_flight") == 0)
    return got if done else None


@pytest.mark.timeout(120)
def test_worker_counts_what_it_ran_and_reads_gauges_from_the_directory(tmp_path):
    path = tmp_path / "jobs"
    with TaskQueue(path) as producer:  # the directory is made, then let go
        for i in range(10):
            producer.enqueue("ok", i)
        for i in range(2):
            producer.enqueue("fails", i)
        for i in range(3):
            producer.enqueue("once", i)
        producer.enqueue("fan", 4)
        producer.enqueue("no_such_task")
        producer.apply("ok", (999,), delay=3600)
    server, marks = start_worker(tmp_path, "--concurrency", "3")
    try:
        got = until(lambda: finished(server.url, succeeded=10 + 3 + 1 + 4, dead=3), 60,
                    "every job to finish")
        jobs = "diskqueue_jobs_total"
        expected = {
            # task: (enqueued here, started, succeeded, failed, retried, dead)
            "ok": (4, 14, 14, 0, 0, 0),  # 10 from the producer, 4 enqueued by fan
            "fails": (0, 6, 0, 6, 4, 2),  # retries=2: three runs each, then dead
            "once": (0, 6, 3, 3, 3, 0),
            "fan": (0, 1, 1, 0, 0, 0),
            "no_such_task": (0, 0, 0, 1, 0, 1),  # never started: dead at once
        }
        for task, counts in expected.items():
            for state, n in zip(("enqueued", "started", "succeeded", "failed", "retried",
                                 "dead"), counts, strict=True):
                assert got.value(jobs, state=state, task=task, queue="default") == n, \
                    (task, state)
        for name in ("diskqueue_job_run_seconds_count", "diskqueue_job_wait_seconds_count"):
            assert got.value(name, task="ok") == 14
            assert got.value(name, task="fails") == 6
        # gauges read from the directory: the delayed job the producer enqueued is there
        assert got.value("diskqueue_directory_up") == 1
        assert got.value("diskqueue_queue_scheduled", queue="default") == 1
        assert got.value("diskqueue_queue_dead", queue="default") == 3
        assert got.value("diskqueue_queue_jobs_total", queue="default", state="failed") == 10
        assert got.value("diskqueue_queue_jobs_total", queue="default", state="retried") == 7
        assert got.value("diskqueue_worker_slots", state="busy") == 0
        assert got.value("diskqueue_worker_slots", state="idle") == 3

        # jobs another process enqueues now: depth, busy slots, in-flight, run time
        with TaskQueue(path) as producer:  # a client of the worker, which holds it
            producer.enqueue("hold", "go")
            producer.enqueue("hold", "go")
            got = until(lambda: (lambda s: s if s.value("diskqueue_worker_slots",
                                                        state="busy") == 2 else None)(
                scrape(server.url)), 30, "two jobs running")
            assert got.value("diskqueue_worker_slots", state="idle") == 1
            assert got.value("diskqueue_queue_in_flight", queue="default") == 2
            for i in range(5):
                producer.apply("ok", (i,), queue="later")  # a queue this worker also serves
            time.sleep(0.3)
            (marks / "go").touch()
        got = until(lambda: finished(server.url, succeeded=18 + 2 + 5, dead=3), 30,
                    "the held jobs to finish")
        assert got.value("diskqueue_job_run_seconds_count", task="hold") == 2
        assert got.value("diskqueue_job_run_seconds_sum", task="hold") >= 0.6
        # seconds, not milliseconds: runs of 0.3 s and more are all above the 0.25 bucket
        assert got.value("diskqueue_job_run_seconds_bucket", task="hold", le="0.25") == 0
        assert got.value("diskqueue_jobs_total", state="succeeded", task="ok",
                         queue="later") == 5

        # diskq metrics, on the task directory this worker holds, reads the same gauges
        other = Server([sys.executable, "-m", "diskqueue.cli", "metrics", str(path),
                        "--port", "0"], tmp_path, {})
        try:
            seen = scrape(other.url)
        finally:
            assert other.stop() == 0, "".join(other.output)
        for name in ("diskqueue_queue_depth", "diskqueue_queue_scheduled",
                     "diskqueue_queue_in_flight", "diskqueue_queue_dead"):
            for queue in ("default", "later"):
                assert seen.value(name, queue=queue) == got.value(name, queue=queue), name
        assert seen.value("diskqueue_queue_jobs_total", state="succeeded") == 25
        assert not seen.has("diskqueue_jobs_total")  # no worker counts in that process
    finally:
        code = server.stop()
    assert code == 0, "".join(server.output)
    # the only tracebacks are those of the failed runs' log lines (6 of fails, 3 of once)
    out = "".join(server.output)
    runs = sum(out.count(f"({task}) failed") + out.count(f"({task}) is dead")
               for task in ("fails", "once"))
    assert runs == 9 and out.count("Traceback (most recent call last)") == runs, out


@pytest.mark.timeout(120)
def test_process_pool_counts_every_childs_jobs_at_the_one_endpoint(tmp_path):
    path = tmp_path / "jobs"
    with TaskQueue(path) as producer:
        for i in range(8):
            producer.enqueue("ok", i)
        producer.enqueue("fails", 1)
        producer.enqueue("once", 1)
    server, _ = start_worker(tmp_path, "--pool", "process", "--concurrency", "2")
    try:
        got = until(lambda: finished(server.url, succeeded=9, dead=1), 90,
                    "every job to finish")
        assert got.value("diskqueue_jobs_total", state="succeeded", task="ok") == 8
        assert got.value("diskqueue_jobs_total", state="started", task="fails") == 3
        assert got.value("diskqueue_jobs_total", state="dead", task="fails") == 1
        assert got.value("diskqueue_jobs_total", state="retried", task="once") == 1
        assert got.value("diskqueue_jobs_total", state="succeeded", task="once") == 1
        assert got.value("diskqueue_job_run_seconds_count") == 8 + 3 + 2
        assert got.value("diskqueue_worker_slots", state="idle") == 2
    finally:
        code = server.stop()
    assert code == 0, "".join(server.output)


HOLDER = """
import sys, time
import diskqueue as dq
q = dq.Queue(sys.argv[1])
q.enqueue_many(list(range(5)))
q.reserve(lease=600)
q.reserve(lease=600)
print("holding", flush=True)
for line in sys.stdin:  # each line: enqueue one more
    q.enqueue(line.strip())
    print("enqueued", flush=True)
"""


@pytest.mark.timeout(60)
def test_diskq_metrics_reads_a_queue_another_process_holds(tmp_path):
    path = tmp_path / "q"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], env=env(),
                              text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdin is not None
    server = None
    try:
        assert holder.stdout.readline() == "holding\n"
        server = Server([sys.executable, "-m", "diskqueue.cli", "metrics", str(path),
                         "--port", "0"], tmp_path, {})
        got = scrape(server.url)
        assert got.value("diskqueue_directory_up") == 1
        assert got.value("diskqueue_queue_depth", queue="default") == 3
        assert got.value("diskqueue_queue_in_flight", queue="default") == 2
        assert not got.has("diskqueue_queue_scheduled")  # plain queues have no schedule
        holder.stdin.write("more\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "enqueued\n"
        assert scrape(server.url).value("diskqueue_queue_depth", queue="default") == 4
    finally:
        if server is not None:
            assert server.stop() == 0, "".join(server.output)
        holder.stdin.close()
        holder.wait(30)
    # the holder is gone: a scrape now opens the directory itself, briefly
    server = Server([sys.executable, "-m", "diskqueue.cli", "metrics", str(path), "--port",
                     "0"], tmp_path, {})
    try:
        got = scrape(server.url)
        assert got.value("diskqueue_queue_depth", queue="default") == 6  # reservations back
        path_gone = tmp_path / "q-moved"
        path.rename(path_gone)
        got = scrape(server.url)
        assert got.value("diskqueue_directory_up") == 0
        assert not got.has("diskqueue_queue_depth")
    finally:
        assert server.stop() == 0, "".join(server.output)


@pytest.mark.timeout(60)
def test_a_port_in_use_is_a_clear_error_and_nothing_runs(tmp_path):
    path = tmp_path / "jobs"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        tasks = TaskQueue(path)

        @tasks.task()
        def job() -> None:
            return None

        job.delay()
        with pytest.raises(DiskQueueError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            tasks.start(metrics_port=int(port))
        assert not tasks._workers
        with pytest.raises(ValueError, match="0 to 65535"):
            tasks.start(metrics_port=70000)
        assert tasks.stats()["default"]["depth"] == 1  # nothing ran
        tasks.close()

        write_app(tmp_path, "metricsapp", APP)
        out = subprocess.run([sys.executable, "-m", "diskqueue.cli.worker", str(path),
                              "--app", "metricsapp:tasks", "--metrics-port", port],
                             cwd=tmp_path, text=True, capture_output=True, timeout=60,
                             env=env(DQ_TEST_MARKS=str(tmp_path), DQ_TEST_JOBS=str(path)))
    assert out.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
    bad = subprocess.run([sys.executable, "-m", "diskqueue.cli.worker", str(path), "--app",
                          "metricsapp:tasks", "--metrics-port", "-1"], cwd=tmp_path,
                         env=env(DQ_TEST_JOBS=str(path)), text=True, capture_output=True,
                         timeout=60)
    assert bad.returncode == 2 and "--metrics-port must be 0 to 65535" in bad.stderr
    with TaskQueue(path) as check:
        assert check.stats()["default"]["depth"] == 1


@pytest.mark.timeout(60)
def test_a_thread_that_returns_after_its_timeout_is_not_a_success(tmp_path):
    tasks = TaskQueue(tmp_path / "jobs")
    release = threading.Event()

    @tasks.task(timeout=0.2, retries=0)
    def stuck() -> str:
        release.wait(30)
        return "too late"

    job = stuck.delay()
    worker = tasks.start(concurrency=1, metrics_port=0)
    try:
        with pytest.raises(JobTimeout):
            job.result(timeout=30)
        got = until(lambda: (lambda s: s if s.value("diskqueue_jobs_total", state="dead")
                             else None)(scrape(worker.metrics.url)), 30, "the death counted")
        assert got.value("diskqueue_worker_slots", state="busy") == 0
        release.set()  # the abandoned thread returns now
        time.sleep(0.3)
        got = scrape(worker.metrics.url)
        assert got.value("diskqueue_jobs_total", task="stuck", state="started") == 1
        assert got.value("diskqueue_jobs_total", task="stuck", state="failed") == 1
        assert got.value("diskqueue_jobs_total", task="stuck", state="succeeded") == 0
        assert got.value("diskqueue_job_run_seconds_count", task="stuck") == 1
        assert got.value("diskqueue_job_run_seconds_sum", task="stuck") >= 0.2
    finally:
        release.set()
        worker.stop()
        tasks.close()


@pytest.mark.timeout(60)
def test_async_pool_counts_coroutines(tmp_path):
    tasks = TaskQueue(tmp_path / "jobs")

    @tasks.task(retries=1, backoff=0.01)
    async def fetch(n: int) -> int:
        await asyncio.sleep(0.01)
        if n == 3:
            raise ConnectionError("refused")
        return n

    for n in range(5):
        fetch.delay(n)
    worker = tasks.start(concurrency=3, pool="async", metrics_port=0)
    try:
        got = until(lambda: finished(worker.metrics.url, succeeded=4, dead=1), 30,
                    "every job to finish")
        assert got.value("diskqueue_jobs_total", task="fetch", state="started") == 6
        assert got.value("diskqueue_jobs_total", task="fetch", state="retried") == 1
        assert got.value("diskqueue_job_run_seconds_count", task="fetch") == 6
        assert got.value("diskqueue_job_wait_seconds_count", task="fetch") == 6
        assert got.value("diskqueue_worker_slots", state="idle") == 3
    finally:
        worker.stop()
        tasks.close()
