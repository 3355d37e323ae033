"""A client's word on a pop it has is not taken for a word on a later pop of the same seq.

A Stack pushes where it pops. Client C pops "c" (from seq 3), hands it out and says "got it";
the holder reads the word and lets "c" go. Then "d" is pushed at seq 3, and C pops again
on the same connection: the holder keeps "d" for C and dies before its reply leaves. C
does not know whether its word on "c" was read (no reply came after it), so after the
handover it tells the next holder it has the take at seq 3. That used to settle the held
pop of "d", whose reply never arrived: "d" was lost. Found by the soak (seed 3008: a
client's ``pop_many`` of three items, then a second whose reply died with its holder).
A take is named by its key, the id of its held record and the crc32 of its data; the
second case pushes "c" again, the same bytes at the same seq.
"""

from __future__ import annotations

import pytest
from faults import Child
from test_handed_out import _end, _settled

import diskqueue as dq

HOLDER = """
import os, sys, time
os.environ["DISKQUEUE_TEST_KILL_BEFORE_REPLY"] = "take_run"  # read at import
import pytest

import diskqueue as dq
q = dq.Stack(sys.argv[1], codec="json")
assert q.role == "owner"
for value in ["a", "b", "c"]:
    q.put(value)
print("ready", flush=True)
go = os.path.join(sys.argv[2], "push")
while not os.path.exists(go):
    time.sleep(0.01)
q.put(sys.argv[3])  # at seq 3, where the client popped "c"
open(os.path.join(sys.argv[2], "pushed"), "w").close()
time.sleep(120)
"""

CLIENT = """
import os, sys, time, diskqueue as dq
q = dq.Stack(sys.argv[1], codec="json")
assert q.role == "client"
print("popped", q.pop().value, flush=True)
open(os.path.join(sys.argv[2], "push"), "w").close()
done = os.path.join(sys.argv[2], "pushed")
while not os.path.exists(done):
    time.sleep(0.01)
# The holder keeps "d" for this call and dies before it replies; the call goes on
# with the next holder (this process).
print("popped", *[item.value for item in q.pop_many(1)], flush=True)
assert q.role == "owner"
print("left", *[item.value for item in q], flush=True)
q.close()
"""


@pytest.mark.parametrize("pushed", ["d", "c"])
def test_a_word_on_a_pop_does_not_settle_a_later_pop_of_the_same_seq(tmp_path, pushed):
    path = str(tmp_path / "q")
    holder = client = None
    try:
        holder = Child(HOLDER, path, str(tmp_path), pushed)
        assert holder.wait_lines(1) == ["ready"]
        client = Child(CLIENT, path, str(tmp_path))
        code, lines = client.finish()
        assert code == 0, client.stderr.decode()
        assert holder.proc.wait(10) < 0  # the test hook killed it before its reply
        assert lines[0] == "popped c"
        assert lines[1] == f"popped {pushed}"  # put back on top, then popped again
        assert lines[2] == "left b a"
        with dq.Stack(path, codec="json") as q:
            _settled(q)
            assert [item.value for item in q] == ["b", "a"]
    finally:
        _end(holder, client)
