"""The product contract (SPEC sections 2-5), run over Queue, Stack, PriorityQueue and
PrefixQueue through the uniform ``Adapter`` of conftest.py, plus what is particular to
each structure."""

from __future__ import annotations

import dataclasses
import itertools
import queue
import re
import threading
import time
from pathlib import Path

import pytest
from conftest import LEVEL, PREFIX, RELIABLE, STRUCTURES, make_adapter

import diskqueue as dq

reliable = pytest.mark.parametrize("kind", RELIABLE)


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class FsPath:
    """An ``os.PathLike`` that is not a ``pathlib.Path``."""

    def __init__(self, path):
        self.path = str(path)

    def __fspath__(self):
        return self.path


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


# -- opening and closing -------------------------------------------------------------
@pytest.mark.parametrize("as_path", [str, Path, FsPath])
def test_open_takes_str_and_pathlike(kind, path, as_path):
    first = make_adapter(kind, str(path))
    first.q = first.open()
    first.add("x")
    first.q.close()
    again = make_adapter(kind, as_path(path))
    with again.open() as again.q:
        assert again.values() == ["x"]


def test_a_file_in_the_way_is_refused_naming_the_path(kind, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a queue")
    with pytest.raises(dq.DiskQueueError, match=re.escape(str(blocker.resolve()))):
        make_adapter(kind, blocker).open()


def test_context_manager_closes(kind, path):
    s = make_adapter(kind, path)
    with s.open() as s.q:
        s.add("x")
        assert len(s.q) == 1
    with pytest.raises(dq.Closed):
        len(s.q)


def test_close_is_idempotent_and_every_later_call_raises_closed(s):
    s.add(1)
    s.q.close()
    s.q.close()
    calls = [
        lambda: len(s.q), lambda: bool(s.q), lambda: list(s.q), lambda: s.add(2),
        lambda: s.add_many([2]), s.remove, lambda: s.remove_many(1), s.peek,
        lambda: s.peek_by_offset(0), lambda: s.peek_by_id(1), lambda: s.update(1, "x"),
        s.q.clear, lambda: s.remove(block=True, timeout=0.01),
    ]
    for call in calls:
        with pytest.raises(dq.Closed):
            call()
    s.reopen()
    assert s.values() == [1]


@reliable
def test_closed_reliable_calls_raise_closed(s):
    s.add(1)
    item = s.reserve()
    s.q.close()
    for call in [s.reserve, s.q.in_flight, lambda: s.q.ack(item), lambda: s.q.nack(item)]:
        with pytest.raises(dq.Closed):
            call()


def test_drop_deletes_the_directory(s, path):
    s.add(1)
    s.q.drop()
    assert not path.exists()
    with pytest.raises(dq.Closed):
        len(s.q)


def test_drop_after_close_deletes_the_directory(s, path):
    s.add(1)
    s.q.close()
    s.q.drop()
    assert not path.exists()
    s.q = s.open()
    assert len(s.q) == 0


# -- Empty, OutOfBounds, bad arguments -------------------------------------------------
def test_an_empty_structure_raises_empty(s):
    for _ in range(2):  # fresh, and once more after one item came and went
        for call in [s.peek, s.remove, lambda: s.remove_many(3), lambda: s.peek_by_offset(0),
                     lambda: s.peek_by_id(1)]:
            with pytest.raises(dq.Empty):
                call()
        s.add("x")
        s.remove()
    assert issubclass(dq.Empty, queue.Empty)


def test_outside_a_non_empty_structure_is_out_of_bounds(s):
    s.add_many(["a", "b", "c"])
    gone = s.remove()
    for call in [lambda: s.peek_by_offset(2), lambda: s.peek_by_offset(99),
                 lambda: s.peek_by_id(0), lambda: s.peek_by_id(99),
                 lambda: s.peek_by_id(gone.id), lambda: s.update(99, "x"),
                 lambda: s.update(gone.id, "x")]:
        with pytest.raises(dq.OutOfBounds):
            call()
    assert issubclass(dq.OutOfBounds, IndexError)
    assert s.values() == s.order(["a", "b", "c"])[1:]


def test_bad_arguments_raise_type_or_value_error_and_change_nothing(s):
    s.add_many(["a", "b"])
    with pytest.raises(ValueError):
        s.peek_by_offset(-1)
    with pytest.raises(ValueError):
        s.remove_many(-1)
    with pytest.raises(TypeError):
        s.peek_by_offset("0")
    with pytest.raises(TypeError):
        s.peek_by_id("1")
    with pytest.raises(TypeError):
        s.remove_many(1.0)
    assert s.values() == s.order(["a", "b"])


# -- ids, iteration, len -----------------------------------------------------------------
def test_ids_count_from_one_and_keep_counting_across_reopen(s):
    assert [s.add(v).id for v in "abc"] == [1, 2, 3]
    s.remove()
    s.reopen()
    new = s.add("d")
    if s.lifo:
        assert new.id in (3, 4)  # a Stack may reuse the id of the popped item
    else:
        assert new.id == 4
    assert [i.id for i in s.add_many(["e", "f"])] == [new.id + 1, new.id + 2]
    ids = [item.id for item in s.q]
    assert len(set(ids)) == len(ids) == 5
    assert s.peek_by_id(new.id).value == "d"


def test_iteration_follows_dequeue_order_and_removes_nothing(s):
    values = list(range(600))  # more than one page of the scan
    s.add_many(values)
    expected = s.order(values)
    assert s.values() == expected
    assert [item.id for item in s.q] == [s.peek_by_offset(k).id for k in range(600)]
    for k in (0, 1, 255, 256, 511, 512, 599):
        assert s.peek_by_offset(k).value == expected[k]
    assert len(s.q) == 600
    assert [s.remove().value for _ in range(600)] == expected


def test_len_and_bool(s):
    assert len(s.q) == 0 and not s.q
    s.add_many([0, None])
    assert len(s.q) == 2 and s.q
    s.remove()
    s.remove()
    assert len(s.q) == 0 and not s.q


def test_item_is_frozen_and_carries_every_field(s):
    item = s.add({"k": [1]})
    assert isinstance(item, dq.Item)
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.value = 2
    assert (item.id, item.value, item.attempts) == (1, {"k": [1]}, 0)
    assert isinstance(item.key, bytes)
    assert item.priority == (LEVEL if s.cls is dq.PriorityQueue else None)
    assert item.prefix == (PREFIX.encode() if s.cls is dq.PrefixQueue else None)
    assert s.add("other").key != item.key
    assert s.peek_by_id(1) == item
    removed = {i.id: i for i in (s.remove(), s.remove())}
    assert removed[1] == item


# -- update, clear -----------------------------------------------------------------------
def test_update_keeps_place_and_id(s):
    a, b, c = s.add_many(["a", "b", "c"])
    new = s.update(b.id, "B")
    assert (new.id, new.key, new.value) == (b.id, b.key, "B")
    assert s.values() == s.order(["a", "B", "c"])
    s.reopen()
    assert s.values() == s.order(["a", "B", "c"])
    assert s.peek_by_id(b.id).value == "B"


def test_clear_removes_everything_for_good(s):
    s.add_many(["a", "b", "c"])
    s.q.clear()
    assert len(s.q) == 0 and list(s.q) == []
    with pytest.raises(dq.Empty):
        s.peek()
    s.add("d")
    s.reopen()
    assert s.values() == ["d"]


# -- many at once --------------------------------------------------------------------------
def test_add_many_is_ordered(s):
    items = s.add_many(["a", "b", "c"])
    assert [(i.id, i.value) for i in items] == [(1, "a"), (2, "b"), (3, "c")]
    assert s.values() == s.order(["a", "b", "c"])
    assert s.add_many([]) == []


def test_add_many_is_all_or_nothing(s):
    s.add("x")
    with pytest.raises(TypeError):
        s.add_many(["a", object(), "c"])
    assert s.values() == ["x"]
    s.reopen()
    assert s.values() == ["x"]


def test_remove_many_takes_up_to_n_in_order(s):
    s.add_many(list(range(5)))
    expected = s.order(list(range(5)))
    assert [i.value for i in s.remove_many(2)] == expected[:2]
    s.reopen()
    assert s.values() == expected[2:]
    assert [i.value for i in s.remove_many(10)] == expected[2:]
    with pytest.raises(dq.Empty):
        s.remove_many(1)


# -- codecs ----------------------------------------------------------------------------
MSGPACK_VALUES = [None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, "", "héllo", b"\x00\xff",
                  [1, [2]], {"a": [1, {"b": None}]}, {1: "int key"}]


def test_msgpack_round_trips_and_tuples_come_back_as_lists(make):
    s = make()
    s.add_many(MSGPACK_VALUES)
    s.add((1, ("a", 2)))
    expected = MSGPACK_VALUES + [[1, ["a", 2]]]
    s.reopen()
    values = s.values()
    assert values == s.order(expected)
    assert [type(v) for v in values] == [type(v) for v in s.order(expected)]


def test_raw_codec_stores_bytes_like_values(make):
    s = make(codec="raw")
    s.add_many([b"ab", bytearray(b"cd"), memoryview(b"ef")])
    with pytest.raises(TypeError):
        s.add("text")
    s.reopen(codec="raw")
    assert s.values() == s.order([b"ab", b"cd", b"ef"])


def test_json_codec(make):
    s = make(codec="json")
    s.add({"a": [1, 2.5, None, True, "x"], "t": (1, 2)})
    s.reopen(codec="json")
    assert s.remove().value == {"a": [1, 2.5, None, True, "x"], "t": [1, 2]}


def test_pickle_codec_when_asked_by_name(make):
    value = (1, {2, 3}, Point(1, 2))
    s = make(codec="pickle")
    s.add(value)
    s.reopen(codec="pickle")
    assert s.remove().value == value


class Reversed:
    """A custom codec: UTF-8, reversed."""

    @staticmethod
    def dumps(obj):
        return obj.encode()[::-1]

    @staticmethod
    def loads(data):
        return bytes(data)[::-1].decode()


def test_custom_codec_object(make):
    s = make(codec=Reversed())
    s.add("hello")
    raw = s.open(codec="raw")
    assert s.peek(raw).value == b"olleh"
    raw.close()
    s.reopen(codec=Reversed())
    assert s.remove().value == "hello"


def test_a_value_the_codec_cannot_encode_is_a_type_error_and_writes_nothing(s):
    s.add(1)
    circular: list = []
    circular.append(circular)
    for bad in [2**64, circular, object(), {1, 2}]:
        with pytest.raises(TypeError):
            s.add(bad)
        with pytest.raises(TypeError):
            s.add_many([2, bad])
    assert s.values() == [1]


# -- kinds of directory ----------------------------------------------------------------
def test_queue_and_stack_are_interchangeable_on_one_directory(path):
    with dq.Queue(path) as q:
        q.enqueue_many([1, 2, 3])
    with dq.Stack(path) as st:
        assert st.pop().value == 3
        st.push(4)
    with dq.Queue(path) as q:
        assert q.dequeue().value == 1
        assert [i.value for i in q] == [2, 4]


INCOMPATIBLE = [(a, b) for a, b in itertools.permutations(STRUCTURES, 2)
                if {a, b} != {"queue", "stack"}]


@pytest.mark.parametrize("first, second", INCOMPATIBLE)
def test_another_kind_of_structure_is_incompatible(path, first, second):
    owner = make_adapter(first, path)
    owner.q = owner.open()
    owner.add("x")
    owner.q.close()
    with pytest.raises(dq.IncompatibleType):
        make_adapter(second, path).open()
    owner.q = owner.open()
    assert owner.values() == ["x"]
    owner.q.close()


# -- PriorityQueue -----------------------------------------------------------------------
@pytest.fixture
def pq(path):
    with dq.PriorityQueue(path) as pq:
        yield pq


def fill(pq):
    pq.enqueue_many([(5, "a"), (1, "b"), (5, "c"), (-3, "d"), (1, "e")])


def test_priority_order_asc_and_desc_chosen_per_handle(pq, path):
    fill(pq)
    asc = ["d", "b", "e", "a", "c"]
    assert [i.value for i in pq] == asc
    assert [pq.peek_by_offset(k).value for k in range(5)] == asc
    assert pq.priorities() == [-3, 1, 5]
    with dq.PriorityQueue(path, order="desc") as desc:
        assert [i.value for i in desc] == ["a", "c", "b", "e", "d"]
        assert desc.priorities() == [5, 1, -3]
        assert desc.peek().value == "a"
        first, second = desc.dequeue(), desc.dequeue()
        assert [(i.priority, i.value) for i in (first, second)] == [(5, "a"), (5, "c")]
    assert [pq.dequeue().value for _ in range(3)] == ["d", "b", "e"]


def test_priority_length_and_dequeue_by_priority(pq):
    fill(pq)
    assert [pq.length(p) for p in (-3, 1, 5, 42)] == [1, 2, 2, 0]
    assert [pq.dequeue_by_priority(5).value for _ in range(2)] == ["a", "c"]
    with pytest.raises(dq.Empty):
        pq.dequeue_by_priority(5)
    assert pq.length(5) == 0 and pq.priorities() == [-3, 1]
    assert len(pq) == 3


def test_peek_by_priority_id_counts_ids_per_level(pq):
    fill(pq)
    assert [(i.priority, i.id) for i in pq] == [(-3, 1), (1, 1), (1, 2), (5, 1), (5, 2)]
    assert pq.peek_by_priority_id(5, 2).value == "c"
    assert pq.update(5, 2, "C").value == "C"
    assert [i.value for i in pq] == ["d", "b", "e", "a", "C"]
    with pytest.raises(dq.OutOfBounds):
        pq.peek_by_priority_id(5, 3)


def test_peek_by_priority_id_on_an_empty_level_of_a_non_empty_queue_is_out_of_bounds(pq):
    fill(pq)
    with pytest.raises(dq.OutOfBounds):
        pq.peek_by_priority_id(9, 1)


def test_int64_extremes_are_priorities(pq, path):
    top, bottom = 2**63 - 1, -(2**63)
    pq.enqueue(top, "max")
    pq.enqueue(0, "zero")
    pq.enqueue(bottom, "min")
    pq.close()
    with dq.PriorityQueue(path) as again:
        assert [(i.priority, i.value) for i in again] == [
            (bottom, "min"), (0, "zero"), (top, "max")]
        assert again.priorities() == [bottom, 0, top]
        assert again.peek_by_priority_id(top, 1).value == "max"
        for bad in (2**63, bottom - 1):
            with pytest.raises(ValueError):
                again.enqueue(bad, "x")
        for bad in (True, 1.5, "1", None):
            with pytest.raises(TypeError):
                again.enqueue(bad, "x")
        with pytest.raises(ValueError):
            again.enqueue_many([(1, "x"), (2**63, "y")])
        with pytest.raises(TypeError):
            again.enqueue_many([(1, "x"), (False, "y")])
        assert len(again) == 3


def test_priority_iteration_pages_across_levels_in_both_orders(pq, path):
    pq.enqueue_many([(k % 3, k) for k in range(600)])
    asc = sorted(range(600), key=lambda k: k % 3)  # stable: FIFO within a level
    assert [i.value for i in pq] == asc
    with dq.PriorityQueue(path, order="desc") as desc:
        assert [i.value for i in desc] == sorted(range(600), key=lambda k: -(k % 3))


def test_priority_dequeue_many_crosses_levels(pq):
    fill(pq)
    assert [i.value for i in pq.dequeue_many(4)] == ["d", "b", "e", "a"]
    assert [i.value for i in pq.dequeue_many(4)] == ["c"]


# -- PrefixQueue -------------------------------------------------------------------------
PREFIXES = ["a", "a:", "a\x00b", b"\xffbin", "é"]


def as_bytes(prefix):
    return prefix.encode() if isinstance(prefix, str) else prefix


def test_prefixes_are_separate_queues(path):
    with dq.PrefixQueue(path) as px:
        for n in range(2):
            for p in PREFIXES:
                item = px.enqueue(p, f"{p!r}-{n}")
                assert (item.prefix, item.id) == (as_bytes(p), n + 1)
        px.enqueue(b"a", "bytes a")  # the same queue as "a"
    with dq.PrefixQueue(path) as px:
        assert len(px) == 11
        assert sorted(px.prefixes()) == sorted(as_bytes(p) for p in PREFIXES)
        assert all(type(p) is bytes for p in px.prefixes())
        assert px.length("a") == 3 and px.length("a:") == 2 and px.length("zzz") == 0
        for p in PREFIXES:
            assert px.peek(p).value == f"{p!r}-0"
            assert px.peek_by_id(p, 2).value == f"{p!r}-1"
            assert px.dequeue(p).value == f"{p!r}-0"
        assert px.update("a", 3, "A3").value == "A3"
        assert [i.value for i in px.dequeue_many("a", 5)] == ["'a'-1", "A3"]
        with pytest.raises(dq.Empty):
            px.dequeue("a")
        assert b"a" not in px.prefixes() and len(px) == 4
        assert {i.prefix: i.value for i in px} == {as_bytes(p): f"{p!r}-1" for p in PREFIXES[1:]}


def test_prefix_iteration_is_fifo_within_each_prefix(path):
    with dq.PrefixQueue(path) as px:
        for n in range(300):
            px.enqueue(["x", "y"][n % 2], n)
        seen = list(px)
        assert len(seen) == 300
        for p, parity in ((b"x", 0), (b"y", 1)):
            assert [i.value for i in seen if i.prefix == p] == list(range(parity, 300, 2))


def test_a_blocked_dequeue_waits_for_its_own_prefix(path):
    with dq.PrefixQueue(path) as px:
        later = threading.Timer(0.05, px.enqueue, ("b", "for b"))
        later.start()
        with pytest.raises(dq.Empty):
            px.dequeue("a", block=True, timeout=0.3)
        later.join()
        later = threading.Timer(0.1, px.enqueue, ("a", "for a"))
        later.start()
        assert px.dequeue("a", block=True, timeout=5).value == "for a"
        later.join()
        assert [i.value for i in px] == ["for b"]


def test_a_prefix_must_be_str_or_bytes(path):
    with dq.PrefixQueue(path) as px:
        with pytest.raises(TypeError):
            px.enqueue(1, "x")
        assert len(px) == 0


# -- reserve / ack / nack ------------------------------------------------------------------
@reliable
def test_reserve_then_ack_deletes_for_good(s):
    first, _ = s.add_many(["a", "b"])
    item = s.reserve()
    assert (item.id, item.key, item.value, item.attempts) == (1, first.key, "a", 1)
    assert s.q.in_flight() == 1 and len(s.q) == 1
    assert s.values() == ["b"] and s.peek().value == "b"
    s.q.ack(item)
    assert s.q.in_flight() == 0 and len(s.q) == 1
    s.reopen()
    assert s.values() == ["b"] and s.q.in_flight() == 0


@reliable
def test_ack_by_id_and_twice_is_an_error(s):
    s.add_many(["a", "b"])
    item = s.reserve()
    s.q.ack(item.id)
    with pytest.raises(dq.NotReserved):
        s.q.ack(item)
    with pytest.raises(dq.NotReserved):
        s.q.nack(item.id)
    assert s.values() == ["b"]


@reliable
def test_reserve_on_empty_raises_empty(s):
    with pytest.raises(dq.Empty):
        s.reserve()
    s.add("a")
    s.reserve()
    with pytest.raises(dq.Empty):
        s.reserve()


@reliable
def test_nack_puts_back_at_the_front(s):
    s.add_many(["a", "b", "c"])
    item = s.reserve()
    assert s.remove().value == "b"  # a reserved item is not handed out again
    s.q.nack(item)
    assert s.q.in_flight() == 0 and s.values() == ["a", "c"]
    again = s.reserve()
    assert (again.id, again.value, again.attempts) == (item.id, "a", 2)


@reliable
def test_nack_to_the_back(s):
    s.add_many(["a", "b", "c"])
    item = s.reserve()
    s.q.nack(item, front=False)
    assert s.values() == ["b", "c", "a"]
    assert [s.remove().value for _ in range(2)] == ["b", "c"]
    again = s.reserve()
    assert (again.value, again.attempts) == ("a", 2)


@reliable
def test_an_expired_lease_goes_back_to_the_front_by_itself(s):
    s.add_many(["a", "b"])
    stale = s.reserve(lease=0.2)
    assert s.values() == ["b"]
    time.sleep(0.3)
    assert s.q.in_flight() == 0 and s.values() == ["a", "b"]
    again = s.reserve()
    assert (again.value, again.attempts) == ("a", 2)
    with pytest.raises(dq.NotReserved):  # the expired reservation cannot ack the new one
        s.q.ack(stale)
    s.q.ack(again)
    assert s.values() == ["b"] and s.q.in_flight() == 0


@reliable
@pytest.mark.parametrize("first_call", ["iterate", "peek_by_id", "ack"])
def test_an_expired_lease_is_back_whatever_is_called_first(s, first_call):
    s.add_many(["a", "b"])
    stale = s.reserve(lease=0.2)
    time.sleep(0.3)
    if first_call == "iterate":
        assert s.values() == ["a", "b"]
    elif first_call == "peek_by_id":
        assert s.peek_by_id(stale.id).value == "a"
    else:
        with pytest.raises(dq.NotReserved):
            s.q.ack(stale)
    assert s.values() == ["a", "b"] and s.q.in_flight() == 0


@reliable
def test_an_expired_lease_wakes_a_blocked_consumer(s):
    s.add("a")
    s.reserve(lease=0.2)
    start = time.monotonic()
    assert s.remove(block=True, timeout=5).value == "a"
    assert 0.15 <= elapsed_since(start) < 4


@reliable
def test_reservations_come_back_at_the_front_after_reopen(s):
    s.add_many(["a", "b", "c"])
    s.reserve()
    s.reopen()
    assert s.q.in_flight() == 0 and s.values() == ["a", "b", "c"]
    item = s.reserve()
    assert (item.value, item.attempts) == ("a", 2)
    s.q.nack(item, front=False)
    s.reopen()
    assert s.values() == ["b", "c", "a"]
    s.remove_many(2)
    assert s.reserve().attempts == 3


@reliable
def test_clear_drops_reservations(s):
    s.add_many(["a", "b"])
    item = s.reserve()
    s.q.clear()
    assert s.q.in_flight() == 0 and len(s.q) == 0
    with pytest.raises(dq.NotReserved):
        s.q.ack(item)
    s.reopen()
    assert len(s.q) == 0


# -- blocking --------------------------------------------------------------------------
def test_blocking_remove_waits_for_the_timeout_then_raises_empty(s):
    start = time.monotonic()
    with pytest.raises(dq.Empty):
        s.remove(block=True, timeout=0.2)
    assert 0.19 <= elapsed_since(start) < 3


@pytest.mark.parametrize("timeout", [None, 5])
def test_blocking_remove_is_woken_by_another_thread(s, timeout):
    later = threading.Timer(0.1, s.add, ("x",))
    later.start()
    start = time.monotonic()
    assert s.remove(block=True, timeout=timeout).value == "x"
    assert elapsed_since(start) < 4
    later.join()


def test_blocking_remove_many_is_woken_by_another_thread(s):
    later = threading.Timer(0.1, s.add_many, (["x", "y"],))
    later.start()
    assert [i.value for i in s.remove_many(5, block=True, timeout=5)] == s.order(["x", "y"])
    later.join()


@reliable
def test_blocking_reserve_waits_then_raises_empty_or_is_woken(s):
    start = time.monotonic()
    with pytest.raises(dq.Empty):
        s.reserve(block=True, timeout=0.2)
    assert elapsed_since(start) >= 0.19
    later = threading.Timer(0.1, s.add, ("x",))
    later.start()
    item = s.reserve(block=True, timeout=5)
    assert (item.value, item.attempts) == ("x", 1)
    later.join()


# -- maxsize -----------------------------------------------------------------------------
def test_maxsize_bounds_the_structure(make):
    s = make(maxsize=2)
    s.add_many(["a", "b"])
    with pytest.raises(dq.Full):
        s.add("c")
    with pytest.raises(queue.Full):
        s.add_many(["c"])
    assert s.values() == s.order(["a", "b"])
    s.remove()
    s.add("c")
    assert len(s.q) == 2


def test_maxsize_counts_what_is_already_on_disk(make):
    first = make()
    first.add_many([1, 2, 3])
    first.q.close()
    s = make(maxsize=3)
    with pytest.raises(dq.Full):
        s.add(4)
    assert len(s.q) == 3


def test_add_many_beyond_maxsize_writes_nothing(make):
    s = make(maxsize=3)
    s.add(1)
    with pytest.raises(dq.Full):
        s.add_many([2, 3, 4])
    assert s.values() == [1]


# -- two handles ---------------------------------------------------------------------------
def test_two_handles_on_one_directory_share_state(s):
    other = s.open()
    s.add("x")
    assert len(other) == 1
    assert s.remove(q=other).value == "x"
    with pytest.raises(dq.Empty):
        s.peek()
    s.add("y", q=other)
    assert s.peek().value == "y"
    other.close()
    assert s.peek().value == "y"  # closing one handle leaves the other open
    with pytest.raises(dq.Closed):
        len(other)


@reliable
def test_two_handles_share_reservations(s):
    other = s.open()
    s.add_many(["a", "b"])
    item = s.reserve(q=other)
    assert s.q.in_flight() == 1
    assert s.remove().value == "b"
    s.q.ack(item)
    assert other.in_flight() == 0 and len(other) == 0
    other.close()
