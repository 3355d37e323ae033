"""Tasks from asyncio: ``adelay``, ``aapply``, ``aenqueue``, ``aresult``, with the worker
in this process and in another one (``diskq-worker``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from faults import child_env

import diskqueue as dq

APP = """
import diskqueue as dq

tasks = dq.TaskQueue({path!r})

@tasks.task()
def add(a, b):
    return a + b

@tasks.task(retries=0)
def boom(message):
    raise ValueError(message)

@tasks.task()
async def slow_double(x):
    import asyncio
    await asyncio.sleep(0.05)
    return 2 * x
"""


def load_app(tmp_path: Path, name: str = "aioapp") -> Any:
    (tmp_path / f"{name}.py").write_text(APP.format(path=str(tmp_path / "jobs")))
    sys.path.insert(0, str(tmp_path))
    try:
        module = __import__(name)
    finally:
        sys.path.remove(str(tmp_path))
    return module


def test_enqueue_and_await_results_with_a_worker_here(tmp_path: Path) -> None:
    app = load_app(tmp_path, "aioapp_here")
    worker = app.tasks.start(concurrency=2)

    async def main() -> None:
        job = await app.add.adelay(2, 3)
        assert await job.aresult(timeout=30) == 5
        job = await app.add.aapply((10, 20), delay=0.2)
        assert job.state == "scheduled"
        assert await job.aresult(timeout=30) == 30
        job = await app.tasks.aenqueue("add", 1, b=1)
        assert await job.aresult(timeout=30) == 2
        assert await (await app.slow_double.adelay(21)).aresult(timeout=30) == 42
        with pytest.raises(dq.JobFailed) as failed:
            await (await app.boom.adelay("no")).aresult(timeout=30)
        assert failed.value.error_type == "ValueError" and "no" in failed.value.error
        # many awaited results: one thread between them, not one each
        threads = threading.active_count()
        jobs = [await app.slow_double.adelay(i) for i in range(50)]
        results = asyncio.gather(*(j.aresult(timeout=60) for j in jobs))
        await asyncio.sleep(0.01)
        assert threading.active_count() <= threads + 1
        assert await results == [2 * i for i in range(50)]

    try:
        asyncio.run(main())
    finally:
        worker.stop(timeout=30)
        app.tasks.close()


def test_aresult_times_out_without_blocking_the_loop(tmp_path: Path) -> None:
    app = load_app(tmp_path, "aioapp_timeout")

    async def main() -> None:
        job = await app.add.adelay(1, 2)  # no worker runs it
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(ticker())
        started = time.monotonic()
        with pytest.raises(dq.JobTimeout):
            await job.aresult(timeout=0.5)
        assert 0.45 <= time.monotonic() - started < 5
        beat.cancel()
        assert ticks >= 20  # the loop kept running while the result was awaited
        with pytest.raises(ValueError):
            await job.aresult(timeout=-1)

    try:
        asyncio.run(main())
    finally:
        app.tasks.close()


def test_a_worker_in_another_process_answers_an_awaited_result(tmp_path: Path) -> None:
    app = load_app(tmp_path, "aioapp_far")
    worker = subprocess.Popen(
        [sys.executable, "-m", "diskqueue.cli.worker", str(tmp_path / "jobs"), "--app",
         "aioapp_far:tasks", "--log-level", "error"],
        cwd=tmp_path, env=child_env({"PYTHONPATH": str(tmp_path)}),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def main() -> None:
        jobs = [await app.add.adelay(i, i) for i in range(10)]
        assert await asyncio.wait_for(
            asyncio.gather(*(j.aresult(timeout=60) for j in jobs)), 90
        ) == [2 * i for i in range(10)]

    try:
        asyncio.run(main())
    finally:
        app.tasks.close()
        worker.terminate()
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, textwrap.shorten(err.decode(), 2000)
