"""Dramatiq's default middleware on DiskQueueBroker: retries, time limits, age limits,
callbacks, results with a backend, pipelines and groups.

Ported from Dramatiq's ``tests/middleware/test_retries.py``, ``test_time_limit.py``,
``tests/test_callbacks.py``, ``test_results.py`` and ``test_composition.py``
(rewritten, same scenarios), with ``stub_broker`` swapped for DiskQueueBroker and
Dramatiq's in-memory ``StubBackend`` for results and group callbacks. Left out: the
Redis/Memcached backend variants of the result tests (they test those backends, not
the broker; ``examples/scale-out`` runs results on Redis), the tests that mock
``logging`` to check Dramatiq's own log lines, the time-limit unit tests that never
enqueue a message, and the pipeline-building tests that never run a worker.

Where Dramatiq's stub ``join(fail_fast=True)`` re-raised an actor's exception, these
tests look at the dead letters instead: a broker shared between processes cannot hand
an exception object across.
"""

from __future__ import annotations

import time
from threading import Event

import pytest

dramatiq = pytest.importorskip("dramatiq", reason="needs the dramatiq extra")

from dramatiq import group, pipeline  # noqa: E402
from dramatiq.errors import Retry  # noqa: E402
from dramatiq.middleware import CurrentMessage, GroupCallbacks  # noqa: E402
from dramatiq.rate_limits.backends import StubBackend as StubLimiterBackend  # noqa: E402
from dramatiq.results import ResultFailure, Results, ResultTimeout  # noqa: E402
from dramatiq.results.backends import StubBackend  # noqa: E402

pytest_plugins = ("dramatiq_fixtures",)


def _run(broker, worker, *actors) -> None:
    for actor in actors:
        broker.join(actor.queue_name)
    worker.join()


@pytest.fixture
def results(broker):
    backend = StubBackend()
    broker.add_middleware(Results(backend=backend))
    return backend


# -- retries ------------------------------------------------------------------------
def test_actors_retry_on_failure(broker, worker):
    failures, successes = [], []

    @dramatiq.actor(min_backoff=50, max_backoff=100)
    def do_work():
        if not failures:
            failures.append(1)
            raise RuntimeError("first failure")
        successes.append(1)

    do_work.send()
    _run(broker, worker, do_work)
    assert successes == [1]
    assert broker.dead_letters(do_work.queue_name) == []


def _always_failing(attempts: list, **options):
    """An actor that records each attempt and always fails."""

    @dramatiq.actor(**options)
    def do_work():
        attempts.append(1)
        raise RuntimeError("failure")

    return do_work


def test_actors_retry_a_max_number_of_times_then_dead_letter(broker, worker):
    attempts: list = []
    do_work = _always_failing(attempts, max_retries=3, min_backoff=20, max_backoff=50)
    sent = do_work.send()
    _run(broker, worker, do_work)
    assert len(attempts) == 4
    [dead] = broker.dead_letters(do_work.queue_name)
    assert dead.message_id == sent.message_id and dead.options["retries"] == 4
    assert "RuntimeError: failure" in dead.options["traceback"]


def test_actors_retry_for_a_max_time(broker, worker):
    attempts: list = []
    do_work = _always_failing(attempts, max_age=100, min_backoff=50, max_backoff=500)
    do_work.send()
    _run(broker, worker, do_work)
    assert len(attempts) >= 1


def test_retry_exceptions_can_specify_a_delay(broker, worker):
    stamps = []

    @dramatiq.actor(max_retries=1)
    def do_work():
        stamps.append(time.monotonic())
        if len(stamps) == 1:
            raise Retry(delay=100)

    do_work.send()
    _run(broker, worker, do_work)
    # At least the delay; at most one idle wait (worker_timeout, 100 ms) of the delay
    # queue's consumer later, plus slack for a loaded machine.
    assert 0.1 <= stamps[1] - stamps[0] < 0.6


@pytest.mark.parametrize("option", ["min_backoff", "max_backoff"])
def test_zero_backoff_retries_at_once(broker, worker, option):
    stamps = []

    @dramatiq.actor(max_retries=5, **{option: 0})
    def do_work():
        stamps.append(time.monotonic())
        raise RuntimeError("failure")

    do_work.send()
    _run(broker, worker, do_work)
    assert len(stamps) == 6
    assert stamps[-1] - stamps[0] < 5


@pytest.mark.parametrize("max_retries", [0, 4])
def test_messages_can_be_assigned_max_retries(broker, worker, max_retries):
    attempts = []

    @dramatiq.actor(max_retries=100, min_backoff=0)
    def do_work():
        attempts.append(1)
        raise RuntimeError("failure")

    do_work.send_with_options(max_retries=max_retries)
    _run(broker, worker, do_work)
    assert len(attempts) == max_retries + 1


def test_actors_can_conditionally_retry(broker, worker):
    attempts = []

    def should_retry(retries, exception):
        return retries < 3 and isinstance(exception, RuntimeError)

    @dramatiq.actor(retry_when=should_retry, max_retries=0, min_backoff=20, max_backoff=20)
    def raises(runtime_error):
        attempts.append(1)
        raise (RuntimeError if runtime_error else ValueError)("error")

    raises.send(False)
    _run(broker, worker, raises)
    assert len(attempts) == 1
    attempts.clear()
    raises.send(True)
    _run(broker, worker, raises)
    assert len(attempts) == 4


class Expected(Exception):
    pass


def test_actor_with_throws_does_not_retry(broker, worker):
    attempts = []

    @dramatiq.actor(throws=(Expected,))
    def do_work():
        attempts.append(1)
        raise Expected("expected")

    do_work.send()
    _run(broker, worker, do_work)
    assert len(attempts) == 1
    assert len(broker.dead_letters(do_work.queue_name)) == 1


def test_retried_messages_carry_increasing_requeue_times(broker, worker):
    broker.add_middleware(CurrentMessage())
    stamps = []

    @dramatiq.actor(max_retries=2, min_backoff=50, max_backoff=50)
    def do_work():
        options = CurrentMessage.get_current_message().options
        if "requeue_timestamp" in options:
            stamps.append(options["requeue_timestamp"])
        raise RuntimeError("failure")

    sent = do_work.send_with_options(delay=50)
    _run(broker, worker, do_work)
    assert len(stamps) == 2 and stamps[0] < stamps[1]
    assert stamps[0] > sent.message_timestamp


@pytest.mark.parametrize("succeeds", [False, True])
def test_on_retry_exhausted_is_sent_only_when_retries_run_out(broker, worker, succeeds):
    attempts, exhausted = [], []

    @dramatiq.actor
    def handle_exhausted(message_data, retry_info):
        exhausted.append(retry_info)

    @dramatiq.actor(max_retries=2, on_retry_exhausted=handle_exhausted.actor_name)
    def do_work():
        attempts.append(1)
        if not succeeds:
            raise Retry(delay=1)

    do_work.send()
    _run(broker, worker, do_work, handle_exhausted)
    assert len(attempts) == (1 if succeeds else 3)
    assert len(exhausted) == (0 if succeeds else 1)


# -- time limits ----------------------------------------------------------------------
@pytest.mark.parametrize("on_actor", [True, False])
def test_time_limits_interrupt_the_actor(broker, worker, on_actor):
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    interrupted, successes = [], []

    @dramatiq.actor(max_retries=0, **({"time_limit": 200} if on_actor else {}))
    def do_work():
        try:
            for _ in range(30):
                time.sleep(0.1)
        except TimeLimitExceeded:
            interrupted.append(1)
            raise
        successes.append(1)

    do_work.send_with_options(**({} if on_actor else {"time_limit": 200}))
    _run(broker, worker, do_work)
    assert interrupted == [1] and successes == []
    [dead] = broker.dead_letters(do_work.queue_name)
    assert "TimeLimitExceeded" in dead.options["traceback"]


# -- callbacks -----------------------------------------------------------------------
def test_success_and_failure_callbacks(broker, worker):
    saved, reported = [], []

    @dramatiq.actor
    def add(x, y):
        return x + y

    @dramatiq.actor(max_retries=0)
    def fail():
        raise ValueError("no")

    @dramatiq.actor
    def save(message_data, result):
        saved.append(result)

    @dramatiq.actor
    def report(message_data, exception_data):
        reported.append((message_data["actor_name"], exception_data["type"]))

    add.send_with_options(args=(1, 2), on_success=save)
    fail.send_with_options(on_failure="report")
    _run(broker, worker, add)
    assert saved == [3] and reported == [("fail", "ValueError")]


def test_callbacks_know_the_number_of_retries(broker, worker):
    seen = []

    @dramatiq.actor(max_retries=2, min_backoff=1, max_backoff=1)
    def do_work():
        raise RuntimeError("failure")

    @dramatiq.actor
    def report(message_data, exception_data):
        seen.append(message_data["options"]["retries"])

    do_work.send_with_options(on_failure=report)
    _run(broker, worker, do_work)
    # Called on every failure, counting up; the callbacks themselves run concurrently.
    assert sorted(seen) == [1, 2, 3]


# -- results, pipelines, groups ----------------------------------------------------
def test_actors_can_store_results_and_exceptions(broker, worker, results):
    @dramatiq.actor(store_results=True)
    def answer():
        return 42

    @dramatiq.actor(store_results=True, max_retries=0)
    def broken():
        raise RuntimeError("broken")

    assert answer.send().get_result(block=True, timeout=10_000) == 42
    with pytest.raises(ResultFailure, match="broken"):
        broken.send().get_result(block=True, timeout=10_000)


def test_retrieving_a_result_can_time_out(broker, worker, results):
    @dramatiq.actor(store_results=True)
    def slow():
        time.sleep(0.5)

    with pytest.raises(ResultTimeout):
        slow.send().get_result(block=True, timeout=100)


def test_pipeline_results(broker, worker, results):
    @dramatiq.actor(store_results=True)
    def add(x, y=0):
        return x + y

    pipe = pipeline([add.message(1, 2), add.message(3), add.message(4)]).run()
    assert pipe.get_result(block=True, timeout=10_000) == 10
    assert list(pipe.get_results(block=True, timeout=10_000)) == [3, 6, 10]
    assert pipe.completed


def test_pipeline_respects_the_delay_of_its_first_message(broker, worker, results):
    @dramatiq.actor(store_results=True)
    def stamp(*_previous):
        return time.monotonic()

    start = time.monotonic()
    pipe = pipeline([stamp.message_with_options(delay=300), stamp.message()]).run()
    first, _ = pipe.get_results(block=True, timeout=10_000)
    assert first - start >= 0.3


def test_groups_run_in_parallel_and_complete(broker, worker, results):
    @dramatiq.actor(store_results=True)
    def wait(n):
        time.sleep(0.1)
        return n

    start = time.monotonic()
    g = group([wait.message(i) for i in range(5)]).run()
    assert sorted(g.get_results(block=True, timeout=10_000)) == [0, 1, 2, 3, 4]
    assert time.monotonic() - start < 0.45       # 8 worker threads: not one after another
    assert g.completed and g.completed_count == 5


def test_groups_can_have_completion_callbacks(broker, worker):
    broker.add_middleware(GroupCallbacks(StubLimiterBackend()))
    done, finalized, event = [], [], Event()

    @dramatiq.actor
    def do_nothing():
        done.append(time.monotonic())

    @dramatiq.actor
    def finalize(n):
        finalized.append((n, time.monotonic()))
        event.set()

    g = group(do_nothing.message() for _ in range(5))
    g.add_completion_callback(finalize.message(42))
    g.run()
    assert event.wait(timeout=30)
    assert len(done) == 5 and [n for n, _ in finalized] == [42]
    assert max(done) <= finalized[0][1]
