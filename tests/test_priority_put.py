"""``PriorityQueue.put`` takes an int priority, or a tuple/list led by one (SPEC §2).

Anything else has no priority a disk queue could order by: a ``TypeError`` that says
what ``put`` takes, and nothing stored (no item, no id used, no level created), whether
through ``put``, ``put_nowait`` or a ``put`` that would have waited for room.
"""

from __future__ import annotations

import pytest

import diskqueue as dq

NOT_PRIORITIES = [
    "x", ("high", "v"), ["high", "v"], ("1", "v"), (1.0, "v"), 2.5, None, b"x", {"p": 1},
    (), [], True, False, (True, "v"), [False, 1], (None, "v"), object(),
]


def state(pq: dq.PriorityQueue) -> tuple:
    return len(pq), pq.priorities(), [(i.priority, i.id, i.value) for i in pq]


@pytest.fixture
def pq(tmp_path):
    with dq.PriorityQueue(tmp_path / "pq") as handle:
        handle.put((1, "first"))
        yield handle


@pytest.mark.parametrize("value", NOT_PRIORITIES, ids=repr)
@pytest.mark.parametrize("how", ["put", "put_nowait", "put block", "put full"])
def test_a_value_without_an_int_priority_is_a_typeerror_and_nothing_is_stored(
        pq, tmp_path, value, how):
    before = state(pq)
    if how == "put full":  # the TypeError comes first, not Full after a wait
        pq.maxsize = 1
    with pytest.raises(TypeError, match=r"PriorityQueue\.put takes an int priority") as caught:
        if how == "put":
            pq.put(value)
        elif how == "put_nowait":
            pq.put_nowait(value)
        else:
            pq.put(value, block=True, timeout=5)
    if isinstance(value, bool) or (isinstance(value, (tuple, list)) and value
                                   and isinstance(value[0], bool)):
        assert "bool is not a priority" in str(caught.value)
    assert "Nothing was stored" in str(caught.value)
    pq.maxsize = 0
    assert state(pq) == before
    pq.close()
    with dq.PriorityQueue(tmp_path / "pq") as again:
        assert state(again) == before
        assert again.enqueue(0, "y").id == 1, "a refused put used an id at priority 0"
        assert again.get() == (0, "y")
        assert again.get() == (1, "first")


def test_a_refused_put_does_not_jump_the_queue(pq):
    for value in ("x", ("high", "v")):
        with pytest.raises(TypeError):
            pq.put(value)
    pq.put((2, "second"))
    assert [pq.get_nowait() for _ in range(2)] == [(1, "first"), (2, "second")]
    assert pq.empty()


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, (2**63, "v"), [2**64, "v"]],
                         ids=repr)
def test_a_priority_out_of_range_is_a_valueerror_and_nothing_is_stored(pq, value):
    before = state(pq)
    for put in (pq.put, pq.put_nowait):
        with pytest.raises(ValueError, match="outside the signed 64-bit range"):
            put(value)
    assert state(pq) == before


@pytest.mark.parametrize("value", [5, -3, (3, "v"), (1, 7, "tie-broken"), [2, "a list"],
                                   [4], (6,), (0, None), (2**63 - 1, {"k": [1]})], ids=repr)
def test_what_put_takes_comes_back_as_it_was_put(pq, value):
    pq.get()  # the fixture's item
    pq.put(value)
    priority = value if isinstance(value, int) else value[0]
    assert pq.priorities() == [priority]
    got = pq.get_nowait()
    assert got == value and type(got) is type(value)


def test_a_pair_is_an_ordinary_item_to_the_other_face(pq):
    pq.put((7, "v"))
    item = pq.peek_by_offset(1)
    assert (item.priority, item.value) == (7, "v")
