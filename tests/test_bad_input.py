"""Refused calls change nothing: wrong types, bad values, un-encodable values, bad paths,
foreign directories, and a full disk.

Every refused call is checked against the structure's contents before and after (and
after a reopen), and the next id must be the one it would have been: a refused call may
not consume an id, write an item, or drop a reservation.
"""

from __future__ import annotations

import json
import math
import os

import pytest

import diskqueue as dq

try:
    import plyvel
except ImportError:  # Python 3.13+
    import plyvel_next as plyvel  # type: ignore[no-redef]

try:
    from . import faults
except ImportError:
    import faults


def circular() -> list:
    loop: list = [1]
    loop.append(loop)
    return loop


def state(h) -> tuple:
    items = [(it.id, it.value, it.priority, it.prefix, it.key) for it in h]
    return items, len(h), h.in_flight() if hasattr(h, "in_flight") else 0


# -- the three structures, each with content and one reservation in flight ------------------

def make_queue(path):
    q = dq.Queue(path)
    q.enqueue_many([1, "two", {"three": [3]}, b"four", None])
    return q


def make_priority(path):
    q = dq.PriorityQueue(path)
    q.enqueue_many([(5, "a"), (-3, "b"), (5, "c"), (2**63 - 1, "max"), (-(2**63), "min")])
    return q


def make_prefix(path):
    q = dq.PrefixQueue(path)
    q.enqueue_many("a", ["a1", "a2"])
    q.enqueue("a:", "colon")
    q.enqueue(b"a\x00b", "nul")
    return q


MAKERS = {"queue": make_queue, "priority": make_priority, "prefix": make_prefix}
REOPEN = {"queue": dq.Queue, "priority": dq.PriorityQueue, "prefix": dq.PrefixQueue}


def reserve_one(kind, q):
    return q.reserve("a") if kind == "prefix" else q.reserve()


def next_id_probe(kind, q):
    """Enqueue one more item; return its id (must continue the lane's count)."""
    if kind == "queue":
        return q.enqueue("probe").id
    if kind == "priority":
        return q.enqueue(5, "probe").id
    return q.enqueue("a", "probe").id


NEXT_ID = {"queue": 6, "priority": 3, "prefix": 3}

CASES = {
    "queue": [
        ("enqueue object()", lambda q: q.enqueue(object()), TypeError),
        ("enqueue 2**64", lambda q: q.enqueue(2**64), TypeError),
        ("enqueue -(2**63)-1", lambda q: q.enqueue(-(2**63) - 1), TypeError),
        ("enqueue circular list", lambda q: q.enqueue(circular()), TypeError),
        ("enqueue_many with object()", lambda q: q.enqueue_many([7, 8, object()]), TypeError),
        ("enqueue_many with 2**64", lambda q: q.enqueue_many([2**64, 7]), TypeError),
        ("enqueue_many with circular", lambda q: q.enqueue_many([7, circular()]), TypeError),
        ("put object()", lambda q: q.put(object()), TypeError),
        ("put_nowait 2**64", lambda q: q.put_nowait(2**64), TypeError),
        ("update with object()", lambda q: q.update(2, object()), TypeError),
        ("update id str", lambda q: q.update("2", 0), TypeError),
        ("peek_by_id str", lambda q: q.peek_by_id("2"), TypeError),
        ("peek_by_id float", lambda q: q.peek_by_id(2.0), TypeError),
        ("peek_by_id bool", lambda q: q.peek_by_id(True), TypeError),
        ("peek_by_offset -1", lambda q: q.peek_by_offset(-1), ValueError),
        ("peek_by_offset str", lambda q: q.peek_by_offset("0"), TypeError),
        ("dequeue_many -1", lambda q: q.dequeue_many(-1), ValueError),
        ("dequeue_many str", lambda q: q.dequeue_many("2"), TypeError),
        ("dequeue_many float", lambda q: q.dequeue_many(2.0), TypeError),
        ("dequeue timeout -1", lambda q: q.dequeue(block=True, timeout=-1), ValueError),
        ("dequeue timeout str", lambda q: q.dequeue(block=True, timeout="1"), TypeError),
        ("reserve lease 0", lambda q: q.reserve(lease=0), ValueError),
        ("reserve lease -1", lambda q: q.reserve(lease=-1), ValueError),
        ("reserve lease nan", lambda q: q.reserve(lease=math.nan), ValueError),
        ("reserve lease str", lambda q: q.reserve(lease="5"), TypeError),
        ("ack id str", lambda q: q.ack("1"), TypeError),
        ("nack id str", lambda q: q.nack("1"), TypeError),
    ],
    "priority": [
        ("priority str", lambda q: q.enqueue("1", "x"), TypeError),
        ("priority float", lambda q: q.enqueue(1.0, "x"), TypeError),
        ("priority bool", lambda q: q.enqueue(True, "x"), TypeError),
        ("priority None", lambda q: q.enqueue(None, "x"), TypeError),
        ("priority 2**63", lambda q: q.enqueue(2**63, "x"), ValueError),
        ("priority -(2**63)-1", lambda q: q.enqueue(-(2**63) - 1, "x"), ValueError),
        ("enqueue object()", lambda q: q.enqueue(1, object()), TypeError),
        ("enqueue 2**64", lambda q: q.enqueue(1, 2**64), TypeError),
        ("enqueue_many priority str",
         lambda q: q.enqueue_many([(1, "x"), ("2", "y")]), TypeError),
        ("enqueue_many priority bool",
         lambda q: q.enqueue_many([(1, "x"), (False, "y")]), TypeError),
        ("enqueue_many priority 2**63",
         lambda q: q.enqueue_many([(1, "x"), (2**63, "y")]), ValueError),
        ("enqueue_many value object()",
         lambda q: q.enqueue_many([(1, "x"), (2, object())]), TypeError),
        ("enqueue_many not a pair", lambda q: q.enqueue_many([(1, "x"), 5]), TypeError),
        ("dequeue_by_priority str", lambda q: q.dequeue_by_priority("5"), TypeError),
        ("dequeue_by_priority 2**63", lambda q: q.dequeue_by_priority(2**63), ValueError),
        ("peek_by_priority_id id str", lambda q: q.peek_by_priority_id(5, "1"), TypeError),
        ("peek_by_priority_id prio bool", lambda q: q.peek_by_priority_id(True, 1), TypeError),
        ("update id str", lambda q: q.update(5, "1", "x"), TypeError),
        ("update prio float", lambda q: q.update(5.0, 1, "x"), TypeError),
        ("update value object()", lambda q: q.update(5, 1, object()), TypeError),
        ("length str", lambda q: q.length("5"), TypeError),
        ("length 2**63", lambda q: q.length(2**63), ValueError),
        ("peek_by_offset -1", lambda q: q.peek_by_offset(-1), ValueError),
        ("dequeue_many -1", lambda q: q.dequeue_many(-1), ValueError),
        ("reserve lease 0", lambda q: q.reserve(lease=0), ValueError),
        ("ack id str", lambda q: q.ack("1"), TypeError),
    ],
    "prefix": [
        ("prefix int", lambda q: q.enqueue(1, "x"), TypeError),
        ("prefix None", lambda q: q.enqueue(None, "x"), TypeError),
        ("prefix list", lambda q: q.enqueue(["a"], "x"), TypeError),
        ("enqueue object()", lambda q: q.enqueue("a", object()), TypeError),
        ("enqueue 2**64", lambda q: q.enqueue("a", 2**64), TypeError),
        ("enqueue_many prefix int", lambda q: q.enqueue_many(1, ["x"]), TypeError),
        ("enqueue_many with object()",
         lambda q: q.enqueue_many("a", ["x", object()]), TypeError),
        ("dequeue prefix int", lambda q: q.dequeue(1), TypeError),
        ("dequeue_many prefix int", lambda q: q.dequeue_many(1, 1), TypeError),
        ("dequeue_many -1", lambda q: q.dequeue_many("a", -1), ValueError),
        ("peek prefix int", lambda q: q.peek(1), TypeError),
        ("peek_by_id id str", lambda q: q.peek_by_id("a", "1"), TypeError),
        ("peek_by_offset -1", lambda q: q.peek_by_offset("a", -1), ValueError),
        ("update id str", lambda q: q.update("a", "1", "x"), TypeError),
        ("update prefix int", lambda q: q.update(1, 1, "x"), TypeError),
        ("update value object()", lambda q: q.update("a", 1, object()), TypeError),
        ("length prefix int", lambda q: q.length(1), TypeError),
        ("reserve prefix int", lambda q: q.reserve(1), TypeError),
        ("reserve lease 0", lambda q: q.reserve("a", lease=0), ValueError),
        ("ack id str", lambda q: q.ack("1"), TypeError),
    ],
}

PARAMS = [pytest.param(kind, call, exc, id=f"{kind}: {name}")
          for kind, cases in CASES.items() for name, call, exc in cases]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind,call,exc", PARAMS)
def test_refused_call_changes_nothing(tmp_path, kind, call, exc):
    path = str(tmp_path / "q")
    q = MAKERS[kind](path)
    try:
        original = state(q)[0]
        reserved = reserve_one(kind, q)
        before = state(q)
        assert before[2] == 1
        with pytest.raises(exc):
            call(q)
        assert state(q) == before, "a refused call changed the contents"
        assert reserved.id == 1 and reserved.attempts == 1
    finally:
        q.close()
    # on disk too: the reservation comes back to the front, nothing else moved
    with REOPEN[kind](path) as q:
        assert state(q)[0] == original
        assert next_id_probe(kind, q) == NEXT_ID[kind], "a refused call consumed an id"


# -- codecs: un-encodable values are TypeError, and nothing is written ------------------------

class _Exploding:
    @staticmethod
    def dumps(obj):
        raise RuntimeError("boom")

    @staticmethod
    def loads(data):
        return data


class _Stringy:
    @staticmethod
    def dumps(obj):
        return "not bytes"

    @staticmethod
    def loads(data):
        return data


CODEC_CASES = [
    ("msgpack", 1, [2**64, object(), circular(), -(2**63) - 1, {1, 2}]),
    ("raw", b"one", ["text", 5, None, [b"a"], object()]),
    ("json", 1, [math.nan, math.inf, -math.inf, circular(), object(), b"bytes"]),
    ("pickle", 1, [lambda: 0]),
    (_Exploding(), None, ["anything"]),
    (_Stringy(), None, ["anything"]),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "codec,good,bad", CODEC_CASES,
    ids=["msgpack", "raw", "json", "pickle", "codec-raises", "codec-returns-str"])
def test_unencodable_values_are_typeerror_and_nothing_is_written(tmp_path, codec, good, bad):
    path = str(tmp_path / "q")
    with dq.Queue(path, codec=codec) as q:
        if good is not None:
            q.enqueue(good)
        before = state(q)
        for value in bad:
            with pytest.raises(TypeError):
                q.enqueue(value)
            with pytest.raises(TypeError):
                q.put(value)
            batch = [good, good, value] if good is not None else [value]
            with pytest.raises(TypeError):
                q.enqueue_many(batch)
            assert state(q) == before, f"{value!r}: something was written"
            if good is not None:
                with pytest.raises(TypeError):
                    q.update(1, value)
                assert state(q) == before, f"update with {value!r} changed the item"
    with dq.Queue(path, codec=codec if good is not None else "raw") as q:
        assert len(q) == (1 if good is not None else 0)
        if good is not None:
            assert [it.value for it in q] == [good]
            assert q.enqueue(good).id == 2, "a refused enqueue consumed an id"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["priority", "prefix", "stack"])
def test_unencodable_values_in_other_structures(tmp_path, kind):
    path = str(tmp_path / "q")
    if kind == "priority":
        q = dq.PriorityQueue(path, codec="json")
        q.enqueue(1, "x")
        calls = [lambda: q.enqueue(1, math.nan),
                 lambda: q.enqueue_many([(1, "y"), (2, math.nan)]),
                 lambda: q.put((1, math.nan))]
    elif kind == "prefix":
        q = dq.PrefixQueue(path, codec="raw")
        q.enqueue("p", b"x")
        calls = [lambda: q.enqueue("p", "str"),
                 lambda: q.enqueue_many("p", [b"y", "str"]),
                 lambda: q.enqueue_many("other", [b"y", "str"])]
    else:
        q = dq.Stack(path)
        q.push("x")
        calls = [lambda: q.push(2**64), lambda: q.push_many(["y", object()]),
                 lambda: q.put(circular())]
    with q:
        before = state(q)
        for call in calls:
            with pytest.raises(TypeError):
                call()
            assert state(q) == before
        if kind == "prefix":
            assert q.prefixes() == [b"p"]


# -- opening: bad arguments change nothing and leave no directory behind ------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("path_value", [123, 1.5, None, b"/tmp/bytes-path", ["x"]],
                         ids=["int", "float", "None", "bytes", "list"])
def test_path_of_wrong_type_is_typeerror(tmp_path, path_value, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cls in (dq.Queue, dq.Stack, dq.PriorityQueue, dq.PrefixQueue):
        with pytest.raises(TypeError):
            cls(path_value)
    assert os.listdir(tmp_path) == []
    if isinstance(path_value, bytes):
        assert not os.path.exists(path_value)


OPEN_CASES = [
    ("maxsize -1", dq.Queue, {"maxsize": -1}, ValueError),
    ("maxsize str", dq.Queue, {"maxsize": "1"}, TypeError),
    ("maxsize float", dq.Queue, {"maxsize": 1.5}, TypeError),
    ("stack maxsize -1", dq.Stack, {"maxsize": -1}, ValueError),
    ("priority maxsize -1", dq.PriorityQueue, {"maxsize": -1}, ValueError),
    ("prefix maxsize -1", dq.PrefixQueue, {"maxsize": -1}, ValueError),
    ("unknown codec", dq.Queue, {"codec": "yaml"}, ValueError),
    ("unknown codec prefix", dq.PrefixQueue, {"codec": "nope"}, ValueError),
    ("codec int", dq.Queue, {"codec": 123}, TypeError),
    ("sync str", dq.Queue, {"sync": "yes"}, TypeError),
    ("order", dq.PriorityQueue, {"order": "up"}, ValueError),
]
OPEN_PARAMS = [pytest.param(c, kw, e, id=n) for n, c, kw, e in OPEN_CASES]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cls,kwargs,exc", OPEN_PARAMS)
def test_bad_open_argument_creates_nothing(tmp_path, cls, kwargs, exc):
    path = str(tmp_path / "new")
    with pytest.raises(exc):
        cls(path, **kwargs)
    assert not os.path.exists(path), "a refused open created the directory"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cls,kwargs,exc", OPEN_PARAMS)
def test_bad_open_argument_leaves_an_existing_queue_alone(tmp_path, cls, kwargs, exc):
    path = str(tmp_path / "q")
    with cls(path) as q:
        if cls is dq.PriorityQueue:
            q.enqueue(1, "kept")
        elif cls is dq.PrefixQueue:
            q.enqueue("p", "kept")
        else:
            q.put("kept")
        before = state(q)
    with pytest.raises(exc):
        cls(path, **kwargs)
    # the directory is not left held: another process can open it
    res = faults.run_py(
        f"import sys, diskqueue as dq; dq.{cls.__name__}(sys.argv[1]).close()", path,
        timeout=30)
    assert res.returncode == 0, res.stderr
    with cls(path) as q:
        assert state(q) == before


# -- paths that are not queue directories ------------------------------------------------

@pytest.mark.timeout(30)
def test_path_that_is_a_regular_file(tmp_path):
    path = tmp_path / "afile"
    path.write_bytes(b"precious")
    for cls in (dq.Queue, dq.Stack, dq.PriorityQueue, dq.PrefixQueue):
        with pytest.raises(dq.DiskQueueError) as info:
            cls(str(path))
        assert str(path) in str(info.value), info.value
        with pytest.raises(dq.DiskQueueError):
            cls(path)  # os.PathLike too
    assert path.read_bytes() == b"precious"


@pytest.mark.timeout(30)
def test_path_below_a_regular_file(tmp_path):
    path = tmp_path / "afile"
    path.write_bytes(b"precious")
    with pytest.raises(dq.DiskQueueError) as info:
        dq.Queue(str(path / "sub"))
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"precious"


def _fill(kind, path):
    if kind == "queue":
        with dq.Queue(path) as q:
            q.enqueue("q-item")
    elif kind == "stack":
        with dq.Stack(path) as q:
            q.push("s-item")
    elif kind == "priority":
        with dq.PriorityQueue(path) as q:
            q.enqueue(3, "p-item")
    else:
        with dq.PrefixQueue(path) as q:
            q.enqueue("x", "x-item")


CLASSES = {"queue": dq.Queue, "stack": dq.Stack, "priority": dq.PriorityQueue,
           "prefix": dq.PrefixQueue}
FAMILY = {"queue": "line", "stack": "line", "priority": "priority", "prefix": "prefix"}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("written", list(CLASSES))
def test_directory_of_another_structure_is_incompatible(tmp_path, written):
    path = str(tmp_path / "q")
    _fill(written, path)
    with CLASSES[written](path) as q:
        before = state(q)
    for other, cls in CLASSES.items():
        if FAMILY[other] == FAMILY[written]:
            with cls(path) as q:  # Queue and Stack share one format
                assert len(q) == 1
            continue
        with pytest.raises(dq.IncompatibleType):
            cls(path)
    # the refused opens released the directory and changed nothing
    res = faults.run_py(
        f"import sys, diskqueue as dq; dq.{CLASSES[written].__name__}(sys.argv[1]).close()",
        path, timeout=30)
    assert res.returncode == 0, res.stderr
    with CLASSES[written](path) as q:
        assert state(q) == before


@pytest.mark.timeout(30)
def test_incompatible_open_while_a_handle_is_open_keeps_that_handle_working(tmp_path):
    path = str(tmp_path / "q")
    with dq.Queue(path) as q:
        q.enqueue(1)
        with pytest.raises(dq.IncompatibleType):
            dq.PriorityQueue(path)
        with pytest.raises(dq.IncompatibleType):
            dq.PrefixQueue(path)
        q.enqueue(2)
        assert [it.value for it in q] == [1, 2]
        assert q.dequeue().value == 1


FOREIGN = {
    "text keys": {b"user:1": b"alice", b"user:2": b"bob"},
    "binary keys": {b"\x00meta": b"?", b"\x01\x00\x00": b"item?",
                    b"\x02abc": b"xyz", b"\x03\x05hello-world": b"\xff\xfe"},
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("contents", list(FOREIGN))
def test_leveldb_that_is_not_a_diskqueue(tmp_path, contents):
    path = str(tmp_path / "foreign")
    db = plyvel.DB(path, create_if_missing=True)
    for k, v in FOREIGN[contents].items():
        db.put(k, v)
    db.close()
    for cls in CLASSES.values():
        with pytest.raises(dq.DiskQueueError) as info:
            cls(path)
        assert path in str(info.value)
    db = plyvel.DB(path)
    try:
        assert dict(db.iterator()) == FOREIGN[contents], "the foreign data was changed"
    finally:
        db.close()


# -- a full disk ------------------------------------------------------------------------------

FULL_DISK = r"""
import json, os, resource, signal, sys
import diskqueue as dq

path, mode = sys.argv[1], sys.argv[2]
q = dq.Queue(path)
q.enqueue_many(["before"] * 10)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = 256 * 1024
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
acked = []
error = None
for n in range(1, 100_000):
    try:
        if mode == "single":
            item = q.enqueue({"n": n, "pad": "x" * 200})
            acked.append(item.id)
        else:
            items = q.enqueue_many([{"n": n, "i": i, "pad": "x" * 200} for i in range(7)])
            acked.extend(it.id for it in items)
    except BaseException as exc:
        error = {"type": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
                 "msg": str(exc)}
        break
# after the failure the handle still answers and is consistent with what was acknowledged
after = {"len": len(q), "first": q.peek().value}
try:
    q.enqueue("still full?")
    after["second"] = "ok"
except dq.DiskQueueError as exc:
    after["second"] = type(exc).__name__
except BaseException as exc:
    after["second"] = "other " + type(exc).__name__
try:
    after["dequeued"] = q.dequeue().value
except dq.DiskQueueError as exc:
    after["dequeued"] = type(exc).__name__
except BaseException as exc:
    after["dequeued"] = "other " + type(exc).__name__
after["len_after_dequeue"] = len(q)
q.close()
print(json.dumps({"acked": acked, "error": error, "after": after}))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["single", "many"])
def test_full_disk_is_a_diskqueueerror_and_loses_nothing(tmp_path, mode):
    path = str(tmp_path / "q")
    res = faults.run_py(FULL_DISK, path, mode, timeout=60)
    assert res.returncode == 0, f"the child crashed: rc={res.returncode} {res.stderr[-3000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    err = out["error"]
    assert err is not None, "writing never failed under RLIMIT_FSIZE"
    assert "DiskQueueError" in err["mro"], f"not a DiskQueueError: {err}"
    assert "OSError" not in err["mro"], err
    assert "full" in err["msg"].lower(), f"the message does not say the disk is full: {err}"
    acked = out["acked"]
    assert len(acked) > 50
    assert out["after"]["len"] == 10 + len(acked), out["after"]
    assert out["after"]["first"] == "before"
    assert out["after"]["second"] in ("ok", "DiskQueueError"), out["after"]
    # a dequeue on the full disk either worked or was refused leaving the item in place
    dequeued = out["after"]["dequeued"] == "before"
    assert dequeued or out["after"]["dequeued"] == "DiskQueueError", out["after"]
    # reopened without the limit: every acknowledged item is there, in order
    with dq.Queue(path) as q:
        items = list(q)
        ids = [it.id for it in items]
        first = 2 if dequeued else 1
        assert ids[: 11 - first] == list(range(first, 11))
        assert set(acked) <= set(ids), sorted(set(acked) - set(ids))[:10]
        assert ids == list(range(first, first + len(ids)))
        assert len(ids) == out["after"]["len_after_dequeue"]
        extra = (len(ids) + first - 1 - 10 - len(acked)
                 - (1 if out["after"]["second"] == "ok" else 0))
        assert extra == 0, f"{extra} items from failed calls were written"
        nxt = q.enqueue("after reopen")
        assert nxt.id == ids[-1] + 1
        assert q.dequeue().value == "before"
