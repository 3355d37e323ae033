"""Task arguments and results: the default msgpack holds the types people pass (dates and
times, Decimal, UUID, sets, tuples kept as tuples), ``TaskQueue(codec=...)`` stores them
with another codec, jobs written before these existed still run, and an argument that
cannot be stored raises TypeError naming the task and the argument, with nothing
enqueued (one call or many)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest

import diskqueue as dq
from diskqueue.tasks import layout as R

try:
    from .test_tasks_support import diskq, run_worker, write_app
except ImportError:
    from test_tasks_support import diskq, run_worker, write_app

VALUES: dict[str, Any] = {
    "when": dt.datetime(2026, 1, 2, 3, 4, 5, 6),
    "aware": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "day": dt.date(2026, 1, 2),
    "clock": dt.time(3, 4, 5, 6),
    "span": dt.timedelta(days=-1, seconds=5, microseconds=7),
    "price": decimal.Decimal("19.90"),
    "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "tags": {"a", "b"},
    "frozen": frozenset({1, 2}),
    "pair": (1, (2, "x")),
    "by_pair": {(1, 2): "tuple key"},
    "plain": [1, 2.5, "s", b"b", None, True, {"k": [1]}],
}

APP = '''
import os
from diskqueue import TaskQueue

tasks = TaskQueue(os.environ["DQ_TEST_JOBS"])


@tasks.task()
def echo(*args, **kwargs):
    """Returns its arguments and the type names it was given, as the worker saw them."""
    seen = [type(a).__name__ for a in args] + [type(v).__name__ for v in kwargs.values()]
    return [list(args), kwargs, seen]
'''


def types_of(values: dict[str, Any]) -> list[str]:
    return [type(v).__name__ for v in values.values()]


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_the_default_codec_round_trips_the_usual_types(tmp_path: Path, pool: str) -> None:
    jobs = tmp_path / "jobs"
    with dq.TaskQueue(jobs) as tasks:
        job = tasks.enqueue("echo", *VALUES.values(), **VALUES)
        assert job.args == list(VALUES.values()) and job.kwargs == VALUES
    app = write_app(tmp_path, "codecapp", APP) + ":tasks"
    done = run_worker(jobs, app, "--drain", "--pool", pool, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with dq.TaskQueue(jobs) as tasks:
        args, kwargs, seen = tasks.job(job.id).result(timeout=0)
    assert args == list(VALUES.values()) and kwargs == VALUES
    assert seen == types_of(VALUES) * 2  # the task got each value with its own type
    assert type(kwargs["pair"]) is tuple and type(kwargs["pair"][1]) is tuple
    assert kwargs["aware"].utcoffset() == dt.timedelta(hours=2)
    peek = diskq("peek", str(jobs))
    assert peek.returncode == 0, peek.stderr


def test_jobs_written_before_the_ext_types_still_run(tmp_path: Path) -> None:
    """A record as the earlier format wrote it (plain msgpack, tuples as lists) reads and
    runs as it did."""
    jobs = tmp_path / "jobs"
    with dq.TaskQueue(jobs) as tasks:
        tasks.enqueue("echo", 0)  # marks the directory; then an old-style job beside it
        rec = R.new_record("0ld0000000000001", "echo", [1, [2, 3]], {"k": (4, 5)},
                           "default", 0, 1e9)
        tasks._engine().push(R.queue_ns("default"), [(R.lane_of(0), rec["id"].encode())],
                             records=[(R.NS_JOBS, rec["id"].encode(), msgpack.packb(rec))])
    app = write_app(tmp_path, "codecapp", APP) + ":tasks"
    done = run_worker(jobs, app, "--drain", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with dq.TaskQueue(jobs) as tasks:
        assert tasks.job("0ld0000000000001").result(timeout=0) == [
            [1, [2, 3]], {"k": [4, 5]}, ["int", "list", "list"]]


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Upper:
    """A codec object: JSON with upper-cased strings on the way in, to prove it is used."""

    def dumps(self, obj: Any) -> bytes:
        import json
        return json.dumps(obj, default=lambda o: str(o).upper()).encode()

    def loads(self, data: bytes) -> Any:
        import json
        return json.loads(data)


@pytest.mark.parametrize(("codec", "arg", "back"), [
    ("json", ("a", 1), ["a", 1]),
    ("pickle", Point(1, 2), Point(1, 2)),
    (Upper(), dt.date(2026, 1, 2), "2026-01-02"),
])
def test_a_codec_stores_arguments_and_results(tmp_path: Path, codec: Any, arg: Any,
                                              back: Any) -> None:
    with dq.TaskQueue(tmp_path / "jobs", codec=codec) as tasks:
        @tasks.task
        def same(value: Any, *, label: str) -> Any:
            return value

        job = same.delay(arg, label="x")
        assert job.args == [back] and job.kwargs == {"label": "x"}
        many = same.map([((arg,), {"label": "y"})])
        worker = tasks.start(concurrency=1)
        try:
            assert job.result(timeout=30) == back
            assert many[0].result(timeout=30) == back
        finally:
            worker.stop()
        record = tasks._read_job(job.id)
        assert record is not None and isinstance(record["args"], bytes)
    # another codec does not misread it: it says which codec wrote the job
    with dq.TaskQueue(tmp_path / "jobs") as plain:
        name = codec if isinstance(codec, str) else "Upper"
        with pytest.raises(dq.DiskQueueError, match=f"stored with the {name} codec"):
            plain.job(job.id).result(timeout=0)
    peek = diskq("peek", str(tmp_path / "jobs"))
    assert peek.returncode == 0, peek.stderr


@pytest.mark.parametrize("codec", [None, "json"])
def test_an_argument_that_cannot_be_stored_names_the_task_and_enqueues_nothing(
        tmp_path: Path, codec: Any) -> None:
    bad = object() if codec is None else dt.date(2026, 1, 2)
    kind = type(bad).__name__
    with dq.TaskQueue(tmp_path / "jobs", codec=codec) as tasks:
        @tasks.task
        def send(to: str, when: Any = None) -> None:
            pass

        send.delay("first")  # opens the directory; the only job that will exist
        calls = {
            "positional": lambda: send.delay("a", bad),
            "keyword": lambda: send.delay("a", when=bad),
            "by name": lambda: tasks.enqueue("send", "a", bad),
            "apply": lambda: send.apply(("a",), {"when": bad}),
            "enqueue_many": lambda: tasks.enqueue_many("send", [("ok",), ("a", bad)]),
            "map": lambda: send.map([("ok",), (("a",), {"when": bad})]),
        }
        for how, call in calls.items():
            with pytest.raises(TypeError) as info:
                call()
            text = str(info.value)
            assert "task 'send'" in text, how
            assert (f"argument 1 ({kind})" in text or f"argument 'when' ({kind})" in text), \
                (how, text)
            assert "nothing was enqueued" in text
        assert len(tasks._engine().scan_records(R.NS_JOBS)) == 1
        assert tasks.stats()["default"]["depth"] == 1


JSON_APP = '''
import os
from diskqueue import TaskQueue

tasks = TaskQueue(os.environ["DQ_TEST_JOBS"], codec="json")


@tasks.task()
def total(values, *, scale):
    return {"sum": sum(values) * scale}
'''


@pytest.mark.parametrize("pool", ["thread", "process", "async"])
def test_a_codec_in_a_real_worker(tmp_path: Path, pool: str) -> None:
    jobs = tmp_path / "jobs"
    app = write_app(tmp_path, "jsonapp", JSON_APP)
    with dq.TaskQueue(jobs, codec="json") as tasks:
        job = tasks.enqueue("total", [1, 2, 3], scale=2)
    done = run_worker(jobs, f"{app}:tasks", "--drain", "--pool", pool, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with dq.TaskQueue(jobs, codec="json") as tasks:
        assert tasks.job(job.id).result(timeout=0) == {"sum": 12}


def test_a_periodic_task_result_with_a_codec(tmp_path: Path) -> None:
    """A tick's job has no arguments to encode; its result is encoded all the same."""
    with dq.TaskQueue(tmp_path / "jobs", codec="json") as tasks:
        @tasks.periodic(every=0.2)
        def beat() -> list[int]:
            return [1, 2]

        worker = tasks.start(concurrency=1)
        try:
            tick = tasks.job(first_job_id(tasks))
            assert tick.result(timeout=30) == [1, 2] and tick.args == []
        finally:
            worker.stop()


def first_job_id(tasks: dq.TaskQueue) -> str:
    """The id of the first job stored, once there is one (30 s at most)."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        rows = tasks._engine().scan_records(R.NS_JOBS, limit=1)
        if rows:
            return bytes(rows[0][0]).decode()
        time.sleep(0.02)
    raise AssertionError("no job in 30 s")
