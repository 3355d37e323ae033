"""The kombu transport on its own: URLs, routing, acks, purge and sizes, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

kombu = pytest.importorskip("kombu")

from faults import run_py  # noqa: E402
from kombu import Connection, Exchange, Queue  # noqa: E402
from kombu.exceptions import ChannelError  # noqa: E402

import diskqueue as dq  # noqa: E402
from diskqueue.contrib.kombu import path_of  # noqa: E402


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"diskqueue://{tmp_path / 'q'}"


def test_the_scheme_works_with_no_import_of_diskqueue_in_the_app(tmp_path: Path) -> None:
    out = run_py(f"""
        import sys
        from celery import Celery
        app = Celery("x", broker="diskqueue://{tmp_path / 'q'}")
        assert "diskqueue.contrib.kombu" not in sys.modules
        with app.connection_for_write() as conn:
            conn.connect()
            print(type(conn.transport).__module__)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["diskqueue.contrib.kombu"]


def test_urls_name_absolute_and_relative_directories() -> None:
    assert path_of("diskqueue:///var/lib/app/queue") == "/var/lib/app/queue"
    assert path_of("diskqueue://data/queue") == "data/queue"
    for bad in ("diskqueue://", "diskqueue:///"):
        with pytest.raises(ValueError, match="names a directory"):
            path_of(bad)


def test_direct_topic_and_fanout_routing_across_connections(url: str) -> None:
    """Bindings made on one connection route messages published on another (each
    connection keeps its own exchange table: only the directory is shared)."""
    direct = Exchange("jobs", "direct")
    topic = Exchange("events", "topic")
    fanout = Exchange("all", "fanout")
    queues = [Queue("a", direct, routing_key="a"), Queue("b", direct, routing_key="b"),
              Queue("eu", topic, routing_key="order.eu.*"),
              Queue("f1", fanout), Queue("f2", fanout)]
    with Connection(url) as consumer_side, Connection(url) as producer_side:
        chan = consumer_side.channel()
        for q in queues:
            q(chan).declare()
        producer = producer_side.Producer()
        producer.publish({"n": 1}, exchange="jobs", routing_key="b")
        producer.publish({"n": 2}, exchange="events", routing_key="order.eu.paid")
        producer.publish({"n": 3}, exchange="events", routing_key="order.us.paid")
        producer.publish({"n": 4}, exchange="all", routing_key="")
        got = {}
        for name in ("a", "b", "eu", "f1", "f2"):
            got[name] = [m.payload["n"] for m in _drain(chan, name)]
    assert got == {"a": [], "b": [1], "eu": [2], "f1": [4], "f2": [4]}


def _drain(chan, name: str) -> list:
    out = []
    while (message := chan.basic_get(name)) is not None:
        message = chan.message_to_python(message)
        out.append(message)
        message.ack()
    return out


def test_reserved_until_acked_rejected_to_the_front_restored_on_close(url: str) -> None:
    with Connection(url) as conn:
        q = conn.SimpleQueue("work")
        for n in range(3):
            q.put(n)
        first = q.get(timeout=1)
        assert first.payload == 0
        assert q.qsize() == 2  # reserved: not counted, as on Redis
        first.reject(requeue=True)
        again = q.get(timeout=1)
        assert again.payload == 0 and again.delivery_info["redelivered"]
        again.ack()
        held = q.get(timeout=1)
        assert held.payload == 1
        q.close()  # closing the channel hands the unacked message back
    with Connection(url) as conn:
        q = conn.SimpleQueue("work")
        assert [q.get(timeout=1).payload for _ in range(2)] == [1, 2]
        q.close()
    with dq.PrefixQueue(path_of(url)) as store:
        assert store.in_flight() == 0


def test_no_ack_consumers_take_messages_out(url: str) -> None:
    with Connection(url) as conn:
        queue = Queue("plain", Exchange("plain"), routing_key="plain", no_ack=True)
        seen = []
        with conn.Consumer(queue, callbacks=[lambda body, m: seen.append(body)],
                           no_ack=True):
            conn.Producer().publish("x", exchange="plain", routing_key="plain",
                                    declare=[queue])
            conn.drain_events(timeout=2)
        assert seen == ["x"]
    with dq.PrefixQueue(path_of(url)) as store:
        assert store.in_flight() == 0 and store.length("plain") == 0


def test_purge_size_and_passive_declare(url: str) -> None:
    with Connection(url) as conn:
        chan = conn.channel()
        with pytest.raises(ChannelError, match="NOT_FOUND"):
            chan.queue_declare("missing", passive=True)
        q = Queue("sized", Exchange("sized"), routing_key="sized")
        q(chan).declare()
        producer = conn.Producer(chan)
        for n in range(5):
            producer.publish(n, exchange="sized", routing_key="sized", priority=n * 2)
        assert chan.queue_declare("sized", passive=True).message_count == 5
        held = chan.basic_get("sized")
        assert chan.message_to_python(held).payload == 0  # priority 0 first
        assert chan.queue_purge("sized") == 4  # the reserved one stays
        assert chan.queue_declare("sized", passive=True).message_count == 0
        chan.basic_reject(held.delivery_tag, requeue=True)
        assert chan.queue_declare("sized", passive=True).message_count == 1


def test_a_connection_without_a_directory_says_what_to_give() -> None:
    with Connection("diskqueue://") as conn, pytest.raises(ValueError, match="names a"):
        conn.connect()


def test_deleting_a_queue_removes_the_bindings_other_processes_made(url: str) -> None:
    fanout = Exchange("everyone", "fanout")
    with Connection(url) as gone, Connection(url) as admin:
        Queue("orphan", fanout)(gone.channel()).declare()
        Queue("kept", fanout)(admin.channel()).declare()
        chan = admin.channel()
        chan.queue_delete("orphan")  # bound by the other connection, not this one
        admin.Producer().publish("hi", exchange="everyone", routing_key="")
        assert chan.queue_declare("kept", passive=True).message_count == 1
        with pytest.raises(ChannelError, match="NOT_FOUND"):
            chan.queue_declare("orphan", passive=True)


def test_the_core_never_imports_celery_or_kombu() -> None:
    out = run_py("""
        import sys
        import diskqueue, diskqueue.cli.admin, diskqueue.cli.worker  # noqa: F401
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("celery", "kombu")))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
