"""A batch a client handed out stays taken when its holder and then the client die.

The same handover as ``test_handed_out`` (the holder is stopped while the client
decodes its reply, so the client's "got it" lands unread; then both are SIGKILLed),
for takes of several items in one call: each item of the batch is noted, and the next
holder must find every note (a batch is read as one run, its notes compared item by
item), so that none of them comes back.
"""

from __future__ import annotations

import pytest
from faults import Child
from test_handed_out import CLIENT, HOLDER, _end, _notes_of, _settled

import diskqueue as dq

TAKE = "value = q.pop() if kind is dq.Stack else q.dequeue()"
BATCH = """values = q.pop_many(2) if kind is dq.Stack else q.dequeue_many(2)
value = ",".join(getattr(v, "value", v) for v in values)"""
assert TAKE in CLIENT
BATCH_CLIENT = CLIENT.replace(TAKE, BATCH)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["Queue", "Stack", "PriorityQueue"])
def test_a_handed_out_batch_stays_taken_when_holder_then_client_die(tmp_path, kind):
    path = str(tmp_path / "q")
    holder = Child(HOLDER, path, kind)
    client = None
    try:
        holder.wait_lines(1)
        client = Child(BATCH_CLIENT, path, kind)
        got = client.wait_lines(1)[0].split(" ", 2)[2].split(",")
        assert len(got) == 2
        holder.kill()  # stopped: the client's "got it" is still unread
        client.kill()  # before it could settle with another holder
        with getattr(dq, kind)(path, codec="json") as q:
            assert q.role == "owner"
            _settled(q)
            left = [item.value for item in q]
            assert _notes_of(path, client.proc.pid) == []  # used, then deleted
        assert not set(got) & set(left)
        assert sorted(left + got) == ["first", "second", "third"]
    finally:
        _end(holder, client)
