"""DiskQueueBroker as a Dramatiq broker: queues, delays, ack/nack, dead letters, join,
flush, and Dramatiq's actor tests with their ``stub_broker`` swapped for it.

Ported from Dramatiq's ``tests/test_actors.py`` (rewritten, same scenarios): work with
args and kwargs, delays in eta order, messages of unknown actors dead-lettered, failing
middleware signals ignored, middleware skipping messages, pause/resume, priorities,
age limits, ``CurrentMessage``. Left out: the tests of actor declaration, naming and
logging (they never reach a broker), and the ones that put raw bytes on the stub's
in-memory queue (replaced here by the undecodable-message test).
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from unittest.mock import patch

import pytest

dramatiq = pytest.importorskip("dramatiq", reason="needs the dramatiq extra")

from dramatiq import Message, Middleware, Worker  # noqa: E402
from dramatiq.errors import QueueJoinTimeout, QueueNotFound  # noqa: E402
from dramatiq.middleware import CurrentMessage, SkipMessage  # noqa: E402

import diskqueue as dq  # noqa: E402
from diskqueue.contrib.dramatiq import DiskQueueBroker  # noqa: E402

pytest_plugins = ("dramatiq_fixtures",)


def _message(queue_name: str = "default", actor_name: str = "nobody") -> Message:
    return Message(queue_name=queue_name, actor_name=actor_name, args=(), kwargs={},
                   options={})


# -- the broker on its own ---------------------------------------------------------
def test_enqueue_consume_ack(broker):
    broker.declare_queue("default")
    sent = broker.enqueue(_message())
    consumer = broker.consume("default", prefetch=2, timeout=100)
    got = next(consumer)
    assert got.message_id == sent.message_id
    assert next(consumer) is None                   # nothing more: waited, then None
    assert broker.handle("default").in_flight() == 1
    consumer.ack(got)
    broker.join("default", timeout=1000)
    assert broker.dead_letters("default") == []


def test_nack_moves_the_message_to_the_dead_letters(broker):
    broker.declare_queue("default")
    sent = broker.enqueue(_message())
    consumer = broker.consume("default", timeout=100)
    consumer.nack(next(consumer))
    broker.join("default", timeout=1000)
    [dead] = broker.dead_letters("default")
    assert dead.message_id == sent.message_id
    assert next(consumer) is None                   # a dead letter is not delivered


def test_delay_puts_the_message_on_the_delay_queue(broker):
    broker.declare_queue("default")
    sent = broker.enqueue(_message(), delay=60_000)
    assert sent.queue_name == "default.DQ" and sent.options["eta"] > 0
    assert next(broker.consume("default", timeout=50)) is None
    got = next(broker.consume("default.DQ", timeout=100))
    assert got.message_id == sent.message_id and got.options["eta"] == sent.options["eta"]
    assert broker.get_declared_delay_queues() == {"default.DQ"}


def test_requeue_puts_fetched_messages_back_in_order(broker):
    broker.declare_queue("default")
    sent = [broker.enqueue(_message()) for _ in range(3)]
    consumer = broker.consume("default", prefetch=3, timeout=100)
    fetched = [next(consumer) for _ in range(2)]
    consumer.requeue(fetched)
    again = [next(broker.consume("default", prefetch=3, timeout=100)) for _ in range(1)]
    assert again[0].message_id == sent[0].message_id


def test_prefetch_bounds_what_one_consumer_holds(broker):
    broker.declare_queue("default")
    for _ in range(3):
        broker.enqueue(_message())
    consumer = broker.consume("default", prefetch=2, timeout=50)
    first, second = next(consumer), next(consumer)
    assert next(consumer) is None                   # its two slots are taken
    consumer.ack(first)
    assert next(consumer) is not None
    consumer.ack(second)


def test_reserved_messages_come_back_after_a_reopen(tmp_path):
    broker = DiskQueueBroker(tmp_path / "b")
    broker.declare_queue("default")
    sent = broker.enqueue(_message())
    assert next(broker.consume("default", timeout=100)) is not None   # never acked
    broker.close()
    broker = DiskQueueBroker(tmp_path / "b")
    broker.declare_queue("default")
    got = next(broker.consume("default", timeout=100))
    assert got.message_id == sent.message_id
    broker.close()


def test_unknown_queues_and_bad_names_are_refused(broker):
    with pytest.raises(QueueNotFound):
        broker.enqueue(_message("missing"))
    with pytest.raises(QueueNotFound):
        broker.consume("missing")
    with pytest.raises(QueueNotFound):
        broker.join("missing")
    with pytest.raises(ValueError, match="invalid queue name"):
        broker.declare_queue("../escape")
    with pytest.raises(ValueError, match="delay and dead-letter queues"):
        broker.declare_queue("default.DQ")
    with pytest.raises(TypeError, match="path must be str"):
        DiskQueueBroker(b"bytes")


def test_a_file_as_the_path_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(dq.DiskQueueError, match="is not a directory"):
        DiskQueueBroker(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "not a directory"


def test_flush_drops_ready_delayed_and_dead_messages(broker):
    for name in ("a", "b"):
        broker.declare_queue(name)
        broker.enqueue(_message(name))
        broker.enqueue(_message(name), delay=60_000)
    consumer = broker.consume("a", prefetch=2, timeout=100)
    consumer.nack(next(consumer))
    broker.enqueue(_message("a"))
    broker.flush("a")
    assert broker.dead_letters("a") == []
    broker.join("a", timeout=1000)
    with pytest.raises(QueueJoinTimeout):
        broker.join("b", timeout=50)
    broker.flush_all()
    broker.join("b", timeout=1000)


def test_an_undecodable_message_is_dead_lettered_not_retried(broker):
    broker.declare_queue("default")
    broker.handle("default").enqueue(b"Q", b"not a dramatiq message")
    assert next(broker.consume("default", timeout=100)) is None
    broker.join("default", timeout=1000)
    assert broker.handle("default").length(b"XQ") == 1


def test_old_dead_letters_are_dropped_by_later_rejections(tmp_path):
    broker = DiskQueueBroker(tmp_path / "b", dead_message_ttl=50)
    broker.declare_queue("default")
    consumer = broker.consume("default", prefetch=2, timeout=100)
    first, second = broker.enqueue(_message()), broker.enqueue(_message())
    consumer.nack(next(consumer))
    time.sleep(0.1)
    consumer.nack(next(consumer))
    assert [m.message_id for m in broker.dead_letters("default")] == [second.message_id]
    assert first.message_id != second.message_id
    broker.close()


def test_the_core_never_imports_dramatiq():
    code = (
        "import pkgutil, importlib, sys, diskqueue\n"
        "for m in pkgutil.walk_packages(diskqueue.__path__, 'diskqueue.'):\n"
        "    if not m.name.startswith('diskqueue.contrib') and not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "assert 'dramatiq' not in sys.modules, 'the core imported dramatiq'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- Dramatiq's actor tests ----------------------------------------------------------
def test_actors_perform_work_with_args_and_kwargs(broker, worker):
    results = []

    @dramatiq.actor
    def add(x, *, y=0):
        results.append(x + y)

    for i in range(20):
        add.send(i, y=100)
    broker.join(add.queue_name)
    worker.join()
    assert sorted(results) == [i + 100 for i in range(20)]


def test_delayed_messages_run_in_eta_order(broker, worker):
    results = []

    @dramatiq.actor
    def append(x):
        results.append(x)

    worker.pause()  # else its delay consumer may hold the first before the count
    append.send_with_options(args=(1,), delay=600)
    append.send_with_options(args=(2,), delay=timedelta(milliseconds=200))
    assert broker.handle(append.queue_name).length(b"DQ") == 2
    worker.resume()
    broker.join(append.queue_name)
    worker.join()
    assert results == [2, 1]


def test_messages_of_missing_actors_are_dead_lettered(broker, worker):
    broker.declare_queue("some-queue")
    message = broker.enqueue(_message("some-queue", "some-actor"))
    broker.join("some-queue")
    worker.join()
    assert [m.message_id for m in broker.dead_letters("some-queue")] == [message.message_id]


def test_failing_middleware_signals_are_ignored(broker, worker):
    class Broken(Middleware):
        def before_process_message(self, broker, message):
            raise RuntimeError("before")

        def after_process_message(self, broker, message, *, result=None, exception=None):
            raise RuntimeError("after")

    database = []

    @dramatiq.actor
    def append(x):
        database.append(x)

    broker.add_middleware(Broken())
    append.send(1)
    broker.join(append.queue_name)
    worker.join()
    assert database == [1]


def test_middleware_can_skip_messages(broker, worker):
    skipped, calls = [], []

    class Skip(Middleware):
        def before_process_message(self, broker, message):
            raise SkipMessage()

        def after_skip_message(self, broker, message):
            skipped.append(1)

    broker.add_middleware(Skip())

    @dramatiq.actor
    def track():
        calls.append(1)

    track.send()
    broker.join(track.queue_name)
    worker.join()
    assert calls == [] and skipped == [1]
    assert broker.dead_letters(track.queue_name) == []   # skipped is acked, not failed


def test_workers_can_be_paused(broker, worker):
    calls = []

    @dramatiq.actor
    def track():
        calls.append(1)

    worker.pause()
    track.send()
    time.sleep(0.2)
    assert calls == []
    worker.resume()
    broker.join(track.queue_name)
    worker.join()
    assert calls == [1]


def test_actors_can_prioritize_work(broker):
    calls = []

    @dramatiq.actor(priority=0)
    def hi():
        calls.append("hi")

    @dramatiq.actor(priority=10)
    def lo():
        calls.append("lo")

    with patch.object(dramatiq.worker, "QUEUE_PREFETCH", 20):
        worker = Worker(broker, worker_timeout=100, worker_threads=1)
        worker.start()
        worker.pause()
        for _ in range(10):
            lo.send()
            hi.send()
        worker.resume()
        broker.join(lo.queue_name)
        worker.join()
        worker.stop()
    assert calls == ["hi"] * 10 + ["lo"] * 10


def test_a_fetched_burst_comes_out_most_urgent_first(broker):
    """The consumer hands a fetched burst out by actor priority, so a worker thread that
    takes the first message before the rest reach it still runs the urgent ones first;
    what it never handed out goes back in the lane's order."""

    @dramatiq.actor(priority=0)
    def hi():
        pass

    @dramatiq.actor(priority=10)
    def lo():
        pass

    for _ in range(3):
        lo.send()
        hi.send()
    consumer = broker.consume(lo.queue_name, prefetch=6, timeout=100)
    got = [next(consumer) for _ in range(4)]
    assert [m.actor_name for m in got] == ["hi", "hi", "hi", "lo"]
    consumer.close()  # the two lo messages it fetched but did not hand out go back
    for message in got:
        consumer.ack(message)
    handle = broker.handle(lo.queue_name)
    assert len(handle) == 2 and handle.in_flight() == 0


@pytest.mark.parametrize("on_actor", [True, False])
def test_messages_past_their_age_limit_are_skipped(broker, on_actor):
    runs = []

    @dramatiq.actor(**({"max_age": 100} if on_actor else {}))
    def do_work():
        runs.append(1)

    do_work.send_with_options(**({} if on_actor else {"max_age": 100}))
    time.sleep(0.15)
    worker = Worker(broker, worker_timeout=100)
    worker.start()
    broker.join(do_work.queue_name)
    worker.join()
    worker.stop()
    assert runs == []


def test_current_message_middleware_sees_the_message(broker, worker):
    broker.add_middleware(CurrentMessage())
    seen = []

    @dramatiq.actor
    def accessor(x):
        seen.append(CurrentMessage.get_current_message())

    sent = accessor.send(1)
    broker.join(accessor.queue_name)
    worker.join()
    assert [m.message_id for m in seen] == [sent.message_id]


def test_the_broker_speaks_diskqueue_underneath(broker):
    broker.declare_queue("default")
    assert isinstance(broker.handle("default"), dq.PrefixQueue)
    assert broker.handle("default.DQ") is broker.handle("default")
