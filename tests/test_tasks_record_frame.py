"""A new pending job's record packed from its frame: the constant bytes of its task, queue
and priority around the packed id, arguments and enqueue time must be exactly the bytes
of the whole record packed at once, for every id, argument, clock and place."""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import uuid

import pytest

import diskqueue as dq
from diskqueue.tasks import jobstore
from diskqueue.tasks import layout as R

ARGS = [
    ([], {}),
    ([1], {}),
    ([1, (2, 3), {"x"}, frozenset({4})], {"when": 1.5, "who": "ada"}),
    ([dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc), dt.date(2024, 1, 2)],
     {"d": decimal.Decimal("1.25"), "u": uuid.UUID(int=7), "t": dt.timedelta(seconds=3)}),
    (["é" * 40, b"\x00" * 300, None, True, -(2**63), 2**64 - 1, [[[]]]], {"k" * 40: {}}),
]
PLACES = [
    ("noop", "default", 0),
    ("send", "mail", -3),
    ("a.long.module.path.tâche_with_a_long_name_" * 3, "q" * 200, 2**63 - 1),
    ("t", "é", -(2**63 - 1)),
]
IDS = ["0123456789abcdef", "0123456789abcdef0", "x" * 31, "y" * 32, "z" * 300]
TIMES = [1_700_000_000.123456, 0.0, 1_700_000_000, 2**40]


@pytest.mark.parametrize("place", PLACES)
def test_a_record_from_its_frame_is_the_record_packed_whole(place):
    template = R.record_template(*place)
    frame = R.record_frame(template)
    for (args, kwargs), job_id, now in itertools.product(ARGS, IDS, TIMES):
        whole = R.pack(R.fill_record(template, job_id, args, kwargs, now))
        parts = (frame, job_id.encode(), R.pack(args), R.pack(kwargs))
        assert R.framed(*parts, now) == whole
        assert R.framed(*parts, -1.0, R.frame_tail(frame, now)) == whole  # a batch's tail
    assert template == R.record_template(*place)  # the frame left the template alone


@pytest.mark.parametrize("now", [1_700_000_000, 1_700_000_000.5])
def test_delay_and_batches_store_whole_records_with_any_clock_and_long_ids(tmp_path, now):
    tq = dq.TaskQueue(tmp_path / "jobs", clock=lambda: now)

    @tq.task(queue="mail", priority=-2)
    def send(*args, **kwargs):
        return None

    jobs = []
    for space in (None, ("w" * 40 + "%06x", itertools.count(1), jobstore._forks[0])):
        if space is not None:  # ids past msgpack's shortest string header
            tq.store._id_space = space
        for args, kwargs in ARGS:
            jobs.append((send.delay(*args, **kwargs), args, kwargs))
        batch = send.map([(tuple(args), kwargs) for args, kwargs in ARGS])
        jobs += [(job, args, kwargs) for job, (args, kwargs) in zip(batch, ARGS, strict=True)]
    eng = tq._engine()
    assert len({job.id for job, _, _ in jobs}) == len(jobs) == 4 * len(ARGS)
    assert any(len(job.id) > 31 for job, _, _ in jobs)
    for job, args, kwargs in jobs:
        want = {"id": job.id, "task": send.name, "args": args, "kwargs": kwargs,
                "queue": "mail", "priority": -2, "state": "pending", "attempts": 0,
                "failures": 0, "enqueued": now, "ready": now}
        assert eng.get_record(R.NS_JOBS, job.id.encode()) == R.pack(want)
        assert job.snapshot() == want
        assert job.args == args and job.kwargs == kwargs  # read back as given
    tq.close()
