"""``after_run``, ``on_retry`` and ``on_dead`` get the run's duration, right under
concurrency; middleware written without ``duration`` keeps working; the ``Timing``
example of docs/tasks.md measures a 1.0 s job as 1.0 s with two jobs at once."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

import diskqueue as dq

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tasks.md"


def docs_timing_class() -> type:
    """The ``Timing`` class exactly as docs/tasks.md defines it."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"^class Timing\(.*?(?=^timing = Timing\(\))", text, re.M | re.S)
    assert found, "docs/tasks.md has no Timing example"
    namespace: dict[str, Any] = {"dq": dq, "time": time}
    exec(found.group(0), namespace)
    return namespace["Timing"]  # type: ignore[no-any-return]


def test_the_docs_timing_example_is_right_with_concurrency_2(tmp_path: Path) -> None:
    timing = docs_timing_class()()
    with dq.TaskQueue(tmp_path / "jobs", middleware=[timing]) as tasks:
        @tasks.task
        def work(seconds: float) -> float:
            time.sleep(seconds)
            return seconds

        long, short = work.delay(1.0), work.delay(0.3)
        worker = tasks.start(concurrency=2)
        try:
            assert long.result(timeout=30) == 1.0 and short.result(timeout=30) == 0.3
        finally:
            worker.stop()
        assert long.started_at is not None and short.started_at is not None
        # the two ran at once: the short one started while the long one ran
        assert abs((long.started_at - short.started_at).total_seconds()) < 0.5
    measured = sorted(duration for _, duration, ok in timing.runs if ok)
    assert len(measured) == 2
    assert 0.3 <= measured[0] < 0.6
    assert 1.0 <= measured[1] < 1.3


class OldStyle(dq.tasks.Middleware):
    """Hooks written before ``duration`` existed."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def after_run(self, job: dq.Job, result: Any = None,
                  error: BaseException | None = None) -> None:
        self.calls.append("after_run")

    def on_retry(self, job: dq.Job, error: BaseException, delay: float) -> None:
        self.calls.append("on_retry")

    def on_dead(self, job: dq.Job, error: BaseException) -> None:
        self.calls.append("on_dead")


class Timed:
    """Not a Middleware subclass: ``duration`` as a keyword-only parameter, and **kwargs."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []

    def after_run(self, job: dq.Job, result: Any = None, error: Any = None, *,
                  duration: float) -> None:
        self.seen.append(("after_run", duration))

    def on_retry(self, job: dq.Job, error: BaseException, delay: float, **more: Any) -> None:
        self.seen.append(("on_retry", more["duration"]))

    def on_dead(self, job: dq.Job, error: BaseException, duration: float = -1.0) -> None:
        self.seen.append(("on_dead", duration))


@pytest.mark.parametrize("pool", ["thread", "process", "async"])
def test_failure_hooks_get_the_duration_and_old_hooks_still_run(
        tmp_path: Path, pool: str, caplog: pytest.LogCaptureFixture) -> None:
    old, timed = OldStyle(), Timed()
    tasks = dq.TaskQueue(tmp_path / "jobs", middleware=[old, timed])
    try:
        failing = tasks.task(fail_slowly, retries=1, backoff=0.01)
        failing.delay()
        failing.delay()
        with caplog.at_level(logging.WARNING, logger="diskqueue"):
            worker = tasks.start(concurrency=1, pool=pool)
            try:
                assert worker.wait_idle(timeout=60)
            finally:
                worker.stop()
        assert not [r for r in caplog.records if "middleware hook" in r.getMessage()]
    finally:
        tasks.close()
    # two jobs, each: a run retried, a run that died; after_run after each run
    assert sorted(old.calls) == sorted(["after_run"] * 4 + ["on_retry"] * 2 + ["on_dead"] * 2)
    assert sorted(name for name, _ in timed.seen) == sorted(old.calls)
    for name, duration in timed.seen:
        assert 0.2 <= duration < 1.5, (name, duration)


def fail_slowly() -> None:  # module level: the process pool's children import it
    time.sleep(0.2)
    raise ValueError("slow failure")
