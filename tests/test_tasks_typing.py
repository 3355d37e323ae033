"""Typed tasks: ``tests/typing/check_tasks.py`` passes ``mypy --strict`` exactly as CI
runs it (the calls that must fail are flagged, and an ignore that is not needed is an
error), and the typed classes behave as before at run time."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import diskqueue as dq
from diskqueue.tasks import AsyncTaskFunction, TaskFunction

ROOT = Path(__file__).resolve().parent.parent
# the same command as in .ci/run
MYPY = ["--strict", "--warn-unused-ignores", "--follow-imports=silent",
        "tests/typing/check_tasks.py"]


def test_the_typing_file_passes_mypy_strict() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install 'diskqueue[dev]')")
    done = subprocess.run([sys.executable, "-m", "mypy", *MYPY], cwd=ROOT, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues found in 1 source file" in done.stdout


def test_ci_runs_the_same_mypy_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'mypy" ' + " ".join(MYPY) in ci


def test_typed_tasks_run_as_before(tmp_path: Path) -> None:
    with dq.TaskQueue(tmp_path / "jobs") as tasks:
        @tasks.task
        def add(x: int, y: int = 0) -> int:
            return x + y

        @tasks.task(retries=1)
        async def double(x: int) -> int:
            return 2 * x

        plain = tasks.task(lambda: "ok", name="plain", queue="other")

        assert type(add) is TaskFunction and isinstance(double, AsyncTaskFunction)
        assert isinstance(double, TaskFunction) and double.is_async
        assert add(1, 2) == 3 and asyncio.run(double(4)) == 8  # run here, as before
        assert plain.options.queue == "other"
        jobs: list[dq.Job[int]] = [add.delay(1, y=2), double.delay(5)]
        worker = tasks.start(concurrency=2)
        try:
            assert [job.result(timeout=30) for job in jobs] == [3, 10]
            assert plain.delay().result(timeout=30) == "ok"
        finally:
            worker.stop()
