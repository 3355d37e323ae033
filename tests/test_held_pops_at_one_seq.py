"""Two clients' held pops of one Stack seq, inherited together, each stay their client's.

A Stack pushes where it pops, so two pops a holder held for clients can come from the
same seq: client X pops the top (seq 3), its holder dies before it reads X's "got it";
the next holder keeps X's pop, pushes a new item at seq 3, client Y pops that one, and
that holder dies before it reads Y's word. The holder after them inherits both. It
used to know them by ``(namespace, lane, seq)`` alone, so one of the two was forgotten:
X's word on its pop was taken for a word on Y's and settled nothing, the pop stayed held
after X had handed it out, and once X ended the item came back on top.
"""

from __future__ import annotations

import time

from faults import Child
from test_handed_out import CLIENT, HOLDER, _end, _settled

import diskqueue as dq

# The client of test_handed_out, then one more call (its first to the holder after the
# handovers: it settles what it took) once told to by a file.
ASKED = CLIENT.replace('time.sleep(120)\n', '''go = sys.argv[3]
while not os.path.exists(go):
    time.sleep(0.01)
print("length", len(q), flush=True)
time.sleep(120)
''')
assert ASKED != CLIENT

PUSHER = """
import sys, time, diskqueue as dq
q = dq.Stack(sys.argv[1], codec="json")
assert q.role == "owner"
q.put("fourth")  # where "third" was popped from
print("ready", flush=True)
time.sleep(120)
"""


def test_two_clients_held_pops_of_one_seq_are_settled_each_with_its_client(tmp_path):
    path = str(tmp_path / "q")
    go_x, go_y = str(tmp_path / "x"), str(tmp_path / "y")
    first = second = x = y = None
    try:
        first = Child(HOLDER, path, "Stack")  # first, second, third
        first.wait_lines(1)
        x = Child(ASKED, path, "Stack", go_x)
        assert x.wait_lines(1) == ["handed out third"]
        first.kill()  # stopped: X's "got it" is unread
        second = Child(PUSHER, path)
        second.wait_lines(1)
        y = Child(ASKED, path, "Stack", go_y)
        assert y.wait_lines(1) == ["handed out fourth"]
        second.kill()  # stopped: Y's "got it" is unread
        with dq.Stack(path, codec="json") as q:
            assert q.role == "owner"
            for child, go in ((x, go_x), (y, go_y)):
                open(go, "w").close()
                assert child.wait_lines(2)[1] == "length 2"
            x.kill()
            y.kill()
            _settled(q)
            left = [item.value for item in q]
        assert left == ["second", "first"]
        with dq.Stack(path, codec="json") as q:  # nor at the next open
            time.sleep(0.1)
            _settled(q)
            assert [item.value for item in q] == ["second", "first"]
    finally:
        _end(first, second, x, y)
