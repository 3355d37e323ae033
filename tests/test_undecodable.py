"""An item the codec cannot decode is refused before it is taken, and ``raw=True`` takes it.

Garbage bytes are stored through a second handle with the raw codec (the codec is chosen
per handle, not stored), or a pickle of a class that no longer exists; then every way of
taking the item must raise ``Undecodable`` naming it, and leave it where it was, on disk
and in memory, also across a reopen and when the taker is a client of another process.
"""

from __future__ import annotations

import pickle
import sys
import types
from typing import Any

import faults
import pytest
from conftest import LEVEL, PREFIX, RELIABLE, STRUCTURES, Adapter, make_adapter

import diskqueue as dq

GARBAGE = b"\xc1not msgpack"  # 0xc1 is the one byte msgpack never uses

reliable = pytest.mark.parametrize("kind", RELIABLE)
stdlib_face = pytest.mark.parametrize("kind", ["queue", "stack", "priority"])


def add_raw(s: Adapter, data: bytes) -> dq.Item:
    """Store ``data`` as it is, through a raw-codec handle on the same directory."""
    with s.open(codec="raw") as raw:
        return s.add(data, q=raw)


def with_bad_front(s: Adapter) -> dq.Item:
    """``s`` holds ["a", <garbage>, "b"] in dequeue order; the garbage item is returned
    after "a" was taken, so it is at the front."""
    if s.lifo:
        s.add("b")
        bad = add_raw(s, GARBAGE)
        s.add("a")
    else:
        s.add("a")
        bad = add_raw(s, GARBAGE)
        s.add("b")
    assert s.remove().value == "a"
    return bad


def assert_names(exc: dq.Undecodable, bad: dq.Item, s: Adapter) -> None:
    assert exc.id == bad.id
    assert exc.key == bad.key
    assert exc.data == GARBAGE
    assert exc.priority == (LEVEL if s.cls is dq.PriorityQueue else None)
    assert exc.prefix == (PREFIX.encode() if s.cls is dq.PrefixQueue else None)
    assert isinstance(exc.__cause__, Exception)
    message = str(exc)
    assert f"item {bad.id}" in message and "raw=True" in message and s.q.path in message


def assert_still_at_front(s: Adapter, bad: dq.Item, length: int = 2) -> None:
    assert len(s.q) == length
    front = s.q.peek(*s.lane, raw=True)
    assert (front.id, front.key, front.value) == (bad.id, bad.key, GARBAGE)
    if s.cls is not dq.Stack:
        assert s.q.in_flight() == 0


def test_remove_refuses_and_leaves_the_item(s):
    bad = with_bad_front(s)
    with pytest.raises(dq.Undecodable) as caught:
        s.remove()
    assert_names(caught.value, bad, s)
    assert_still_at_front(s, bad)
    s.reopen()
    assert_still_at_front(s, bad)
    with pytest.raises(dq.Undecodable):
        s.remove()
    assert_still_at_front(s, bad)


def test_remove_many_refuses_whole_when_one_is_undecodable(s):
    bad = with_bad_front(s)
    if not s.lifo:  # (on a Stack it would go on top of the garbage)
        s.add("c")
    for n in (1, 2, 5):
        with pytest.raises(dq.Undecodable) as caught:
            s.remove_many(n)
        assert_names(caught.value, bad, s)
        assert_still_at_front(s, bad, length=2 if s.lifo else 3)


def test_a_batch_with_the_bad_item_in_its_middle_takes_nothing(s):
    s.add_many(["x", "y"])
    bad = add_raw(s, GARBAGE)
    s.add("z")
    with pytest.raises(dq.Undecodable) as caught:
        s.remove_many(4)
    # A Stack's top is "z", so the garbage is second there and third everywhere else.
    assert caught.value.id == bad.id and caught.value.index == (1 if s.lifo else 2)
    assert len(s.q) == 4
    with s.open(codec="raw") as raw:
        assert s.values(q=raw) == s.order([b"\xa1x", b"\xa1y", GARBAGE, b"\xa1z"])


@reliable
def test_reserve_refuses_and_reserves_nothing(s):
    bad = with_bad_front(s)
    with pytest.raises(dq.Undecodable) as caught:
        s.reserve(lease=60)
    assert_names(caught.value, bad, s)
    assert_still_at_front(s, bad)
    s.reopen()
    assert_still_at_front(s, bad)


@stdlib_face
def test_get_refuses_and_leaves_the_item(s):
    bad = with_bad_front(s)
    for get in (lambda: s.q.get(timeout=1), s.q.get_nowait):
        with pytest.raises(dq.Undecodable) as caught:
            get()
        assert_names(caught.value, bad, s)
        assert_still_at_front(s, bad)


def test_peek_and_iteration_name_the_item(s):
    bad = with_bad_front(s)
    with pytest.raises(dq.Undecodable) as caught:
        s.peek()
    assert_names(caught.value, bad, s)
    with pytest.raises(dq.Undecodable) as caught:
        list(s.q)
    assert caught.value.id == bad.id
    assert_still_at_front(s, bad)


def test_raw_remove_takes_it_and_the_next_one_decodes(s):
    bad = with_bad_front(s)
    item = s.remove(raw=True)
    assert (item.id, item.key, item.value) == (bad.id, bad.key, GARBAGE)
    assert len(s.q) == 1
    assert s.remove().value == "b"
    s.reopen()
    assert len(s.q) == 0


def test_raw_remove_many_takes_the_bytes_as_stored(s):
    bad = with_bad_front(s)
    items = s.remove_many(5, raw=True)
    assert [i.id for i in items][0] == bad.id
    assert items[0].value == GARBAGE
    assert items[1].value == b"\xa1b"  # msgpack of "b", undecoded
    assert len(s.q) == 0


@reliable
def test_raw_reserve_then_ack_removes_it(s):
    bad = with_bad_front(s)
    item = s.reserve(raw=True, lease=60)
    assert (item.id, item.value, item.attempts) == (bad.id, GARBAGE, 1)
    assert s.q.in_flight() == 1
    s.q.ack(item)
    assert s.q.in_flight() == 0
    assert s.remove().value == "b"


def test_peek_by_id_raw(s):
    bad = with_bad_front(s)
    lane: tuple[Any, ...] = (LEVEL,) if s.cls is dq.PriorityQueue else s.lane
    peek_by_id = s.q.peek_by_priority_id if s.cls is dq.PriorityQueue else s.q.peek_by_id
    assert peek_by_id(*lane, bad.id, raw=True).value == GARBAGE
    with pytest.raises(dq.Undecodable) as caught:
        peek_by_id(*lane, bad.id)
    assert caught.value.id == bad.id


@pytest.mark.parametrize("kind", ["queue", "stack"])
def test_a_bad_item_read_ahead_is_refused_too(s):
    """Read-ahead holds the next items in memory: a refused one must stay there too."""
    values = [f"v{i}" for i in range(20)]
    s.add_many(values[:10])
    bad = add_raw(s, GARBAGE)
    s.add_many(values[10:])
    for _ in range(10):  # the ten on this side of the garbage, read ahead after two
        s.remove()
    for _ in range(2):
        with pytest.raises(dq.Undecodable) as caught:
            s.remove()
        assert caught.value.id == bad.id
        assert len(s.q) == 11
    assert s.remove(raw=True).value == GARBAGE
    rest = [s.remove().value for _ in range(10)]
    assert rest == (values[10:] if not s.lifo else values[9::-1])


def test_priority_names_the_level_and_other_levels_stay_reachable(path):
    pq = dq.PriorityQueue(path)
    with dq.PriorityQueue(path, codec="raw") as raw:
        bad = raw.enqueue(-3, GARBAGE)
    pq.enqueue(9, "later")
    for call in (pq.dequeue, lambda: pq.dequeue_many(2), lambda: pq.reserve(),
                 lambda: pq.dequeue_by_priority(-3)):
        with pytest.raises(dq.Undecodable) as caught:
            call()
        assert (caught.value.id, caught.value.priority) == (bad.id, -3)
        assert len(pq) == 2 and pq.in_flight() == 0
    assert pq.dequeue_by_priority(9).value == "later"
    assert pq.dequeue(raw=True).value == GARBAGE
    pq.close()


def test_prefix_names_the_prefix_and_other_prefixes_stay_reachable(path):
    px = dq.PrefixQueue(path)
    with dq.PrefixQueue(path, codec="raw") as raw:
        bad = raw.enqueue("bad", GARBAGE)
    px.enqueue("good", 1)
    with pytest.raises(dq.Undecodable) as caught:
        px.dequeue("bad")
    assert (caught.value.id, caught.value.prefix) == (bad.id, b"bad")
    assert px.dequeue("good").value == 1
    assert px.dequeue("bad", raw=True).value == GARBAGE
    assert len(px) == 0
    px.close()


def test_a_pickled_class_that_no_longer_exists(path):
    module = types.ModuleType("gone_module")
    exec("class Gone:\n    pass\n", module.__dict__)
    sys.modules["gone_module"] = module
    try:
        with dq.Queue(path, codec="pickle") as q:
            bad = q.enqueue(module.Gone())
            q.enqueue("next")
    finally:
        del sys.modules["gone_module"]
    with dq.Queue(path, codec="pickle") as q:
        with pytest.raises(dq.Undecodable) as caught:
            q.dequeue()
        assert caught.value.id == bad.id
        assert isinstance(caught.value.__cause__, ModuleNotFoundError)
        assert "gone_module" in str(caught.value)
        assert len(q) == 2
        item = q.dequeue(raw=True)
        assert item.value.startswith(b"\x80") and b"gone_module" in item.value
        assert q.dequeue().value == "next"


def test_undecodable_pickles_with_its_fields(path):
    with dq.Queue(path) as q:
        with dq.Queue(path, codec="raw") as raw:
            raw.enqueue(GARBAGE)
        with pytest.raises(dq.Undecodable) as caught:
            q.dequeue()
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.id, copy.data, str(copy)) == (1, GARBAGE, str(caught.value))

@reliable
def test_a_returned_item_keeps_its_attempts_when_refused(s):
    """A nacked item is read from the front (its attempts in an aside record): a refused
    reserve writes nothing there either."""
    bad = with_bad_front(s)
    s.q.nack(s.reserve(raw=True, lease=60))
    for _ in range(3):
        with pytest.raises(dq.Undecodable) as caught:
            s.reserve(lease=60)
        assert caught.value.id == bad.id
        with pytest.raises(dq.Undecodable):
            s.remove()
    s.reopen()
    with pytest.raises(dq.Undecodable):
        s.remove_many(2)
    again = s.reserve(raw=True, lease=60)
    assert (again.id, again.value, again.attempts) == (bad.id, GARBAGE, 2)


class Refused(Exception):
    pass


def test_the_engine_changes_nothing_when_check_raises(path):
    """The engine half of the hook, on every take method (take_first is the task layer's):
    ``check`` sees the data about to be taken, in order, and its error propagates with
    nothing deleted, reserved or moved."""
    from diskqueue.sharing import registry as engine_mod

    with dq.Queue(path) as q:
        q.enqueue_many(["a", "b", "c"])
        ns = q._ns
        seen: list[list[bytes]] = []

        def refuse(datas: list[bytes]) -> None:
            seen.append(list(datas))
            raise Refused

        eng = engine_mod.acquire(q.path)
        try:
            calls = [
                lambda: eng.pop_one(ns, b"", check=refuse),
                lambda: eng.pop_one(ns, b"", from_tail=True, check=refuse),
                lambda: eng.pop_one(ns, None, check=refuse),
                lambda: eng.take(ns, 2, check=refuse),
                lambda: eng.take(ns, 1, lease=30.0, check=refuse),
                lambda: eng.take_run(ns, b"", 3, check=refuse),
                lambda: eng.take_first([ns], lease=30.0, check=refuse),
                lambda: eng.take_first([ns], check=refuse),
            ]
            for call in calls:
                with pytest.raises(Refused):
                    call()
                assert len(q) == 3 and q.in_flight() == 0
        finally:
            eng.release()
        a, b, c = (q.peek_by_offset(i, raw=True).value for i in range(3))
        assert seen == [[a], [c], [a], [a, b], [a], [a, b, c], [a], [a]]
        assert [i.value for i in q.dequeue_many(3)] == ["a", "b", "c"]


# -- the taker is a client of another process --------------------------------------------
HOLDER = r"""
import sys, time, diskqueue as dq
q = getattr(dq, sys.argv[2])(sys.argv[1], codec="raw")
print("role", q.role, flush=True)
time.sleep(600)
"""

_CLASS = {"queue": "Queue", "stack": "Stack", "priority": "PriorityQueue",
          "prefix": "PrefixQueue"}


@pytest.mark.parametrize("kind", STRUCTURES)
def test_a_client_is_refused_and_the_item_stays_with_the_holder(kind, path):
    """Needs the client half of the take check: the client decodes the reply and, when
    it cannot, tells the holder to put the items back."""
    holder = faults.Child(HOLDER, str(path), _CLASS[kind])
    s = make_adapter(kind, path)
    try:
        assert holder.wait_lines(1) == ["role owner"]
        s.q = s.open()
        assert s.q.role == "client"
        bad = with_bad_front(s)  # the garbage goes in through a raw-codec client handle
        calls = [s.remove, lambda: s.remove_many(3)]
        if kind in RELIABLE:
            calls.append(lambda: s.reserve(lease=60))
        if kind != "prefix":
            calls.append(lambda: s.q.get(timeout=1))
        for call in calls:
            with pytest.raises(dq.Undecodable) as caught:
                call()
            assert caught.value.id == bad.id and caught.value.data == GARBAGE
            assert_still_at_front(s, bad)
        item = s.remove(raw=True)
        assert (item.id, item.value) == (bad.id, GARBAGE)
        assert s.remove().value == "b"
        assert len(s.q) == 0
    finally:
        if s.q is not None:
            s.q.close()
        holder.kill()
