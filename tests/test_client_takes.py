"""A client's takes: ``check=`` vets the items before the holder lets them go.

``check`` is local only (never sent): the client runs it on the raw data of a take's
reply, then tells the holder "got it", or "put back" when ``check`` raised, and the
error propagates. Real holder process, real socket.
"""

from __future__ import annotations

import time

import msgpack
import pytest
from test_sharing import holding

import diskqueue as dq


def settled(q: dq.Queue) -> None:
    deadline = time.monotonic() + 10
    while q.in_flight() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert q.in_flight() == 0


def refuse(datas: list[bytes]) -> None:
    raise LookupError(f"refused {len(datas)}")


def test_check_sees_the_raw_data_of_every_kind_of_take(tmp_path):
    path = str(tmp_path / "q")
    with holding(path), dq.Queue(path) as q:
        assert q.role == "client"
        q.enqueue_many(range(8))
        eng, ns = q._engine, q._ns
        seen: list[list[bytes]] = []
        eng.pop_one(ns, None, check=seen.append)
        eng.take(ns, 2, check=seen.append)
        eng.take_first([ns], check=seen.append)
        eng.take_run(ns, b"", 2, check=seen.append)
        assert seen == [[msgpack.packb(v) for v in vs] for vs in ([0], [1, 2], [3], [4, 5])]
        settled(q)
        assert [i.value for i in q] == [6, 7]


@pytest.mark.parametrize("how", ["pop_one", "take", "take_first", "take_run"])
def test_a_take_whose_check_raises_leaves_its_items_in_place(tmp_path, how):
    path = str(tmp_path / "q")
    with holding(path), dq.Queue(path) as q:
        q.enqueue_many(["a", "b", "c"])
        eng, ns = q._engine, q._ns
        calls = {
            "pop_one": lambda: eng.pop_one(ns, None, check=refuse),
            "take": lambda: eng.take(ns, 2, check=refuse),
            "take_first": lambda: eng.take_first([ns], check=refuse),
            "take_run": lambda: eng.take_run(ns, b"", 2, check=refuse),
        }
        with pytest.raises(LookupError, match="refused"):
            calls[how]()
        settled(q)
        assert [i.value for i in q] == ["a", "b", "c"]
        assert q.dequeue().value == "a"
