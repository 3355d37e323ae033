"""Durability under real SIGKILL: every acknowledged call survives, nothing comes back twice.

Each test runs the package in real child processes (``sys.executable`` with ``PYTHONPATH``
set to this repository) and kills them with a real ``SIGKILL`` at random moments, then
reopens the directory in this process and checks it against what the child acknowledged
(printed, flushed, after the call had returned).
"""

from __future__ import annotations

import inspect
import json
import os
import random
import signal
import time

import pytest

import diskqueue as dq

try:
    from . import faults
except ImportError:
    import faults

ROUNDS = 5
PRIOS = [-5, 0, 7]
PREFIXES = [b"a", b"a:", b"a\x00b"]


def open_kind(path, kind, **kw):
    if kind == "queue":
        return dq.Queue(path, **kw)
    if kind == "priority":
        return dq.PriorityQueue(path, **kw)
    return dq.PrefixQueue(path, **kw)


def lane_of(kind, item):
    if kind == "queue":
        return 0
    if kind == "priority":
        return PRIOS.index(item.priority)
    return PREFIXES.index(item.prefix)


# The child's side of the tests below, with the two helpers above. ``out`` writes one
# whole line with one write(2), so a line is either complete in the pipe or absent: a
# printed line is an acknowledgement.
CHILD_HEADER = r"""
import json, os, random, sys, threading, time
import diskqueue as dq

def out(*parts):
    os.write(1, (" ".join(str(p) for p in parts) + "\n").encode())

""" + f"PRIOS = {PRIOS!r}\nPREFIXES = {PREFIXES!r}\n\n" + "\n".join(
    inspect.getsource(f) for f in (open_kind, lane_of))

PRODUCER = CHILD_HEADER + r"""
path, kind, mode, rnd_seed, rnd_no = sys.argv[1:6]
rnd = random.Random(rnd_seed)
rnd_no = int(rnd_no)
q = open_kind(path, kind)
pad = "p" * 100
out("ready")
c = 0
while True:
    if mode == "single":
        lane = rnd.randrange(3)
        value = {"r": rnd_no, "c": c, "pad": pad}
        if kind == "queue":
            item = q.enqueue(value)
        elif kind == "priority":
            item = q.enqueue(PRIOS[lane], value)
        else:
            item = q.enqueue(PREFIXES[lane], value)
        out("I", lane_of(kind, item), item.id, rnd_no, c)
    else:
        size = rnd.randint(1, 40)
        values = [{"r": rnd_no, "b": c, "i": i, "n": size, "pad": pad} for i in range(size)]
        if kind == "queue":
            items = q.enqueue_many(values)
        elif kind == "priority":
            items = q.enqueue_many([(PRIOS[rnd.randrange(3)], v) for v in values])
        else:
            items = q.enqueue_many(PREFIXES[rnd.randrange(3)], values)
        out("B", rnd_no, c, size, *(f"{lane_of(kind, it)}:{it.id}" for it in items))
    c += 1
"""


def enqueue_to(q, kind, lane, value):
    if kind == "queue":
        return q.enqueue(value)
    if kind == "priority":
        return q.enqueue(PRIOS[lane], value)
    return q.enqueue(PREFIXES[lane], value)


def expected_order(kind, keys):
    """The dequeue (= iteration) order of ``(lane, id)`` keys for each structure."""
    if kind == "queue":
        return sorted(keys, key=lambda k: k[1])
    if kind == "priority":
        return sorted(keys, key=lambda k: (PRIOS[k[0]], k[1]))
    return sorted(keys, key=lambda k: (PREFIXES[k[0]], k[1]))


def snapshot(q, kind):
    """``[((lane, id), value), ...]`` in iteration order."""
    return [((lane_of(kind, it), it.id), it.value) for it in q]


def kill_at_random(code, args, rnd, *, low=0.02, high=0.5, ready_lines=2):
    """Start a child, wait for its first acknowledgement(s), SIGKILL it a random
    moment later; return its complete lines."""
    child = faults.Child(code, *args)
    child.wait_lines(ready_lines, timeout=30)
    time.sleep(rnd.uniform(low, high))
    lines = child.kill()
    assert child.killed_by_sigkill(), (child.proc.returncode, child.stderr[-2000:])
    return lines


# -- (1) enqueue, killed: every acknowledged item is there, in order -------------------------

@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["queue", "priority", "prefix"])
def test_sigkill_during_enqueue_keeps_every_acknowledged_item(tmp_path, kind):
    path = str(tmp_path / "q")
    rnd = random.Random(f"enqueue-{kind}")
    acked: dict[tuple[int, int], tuple[int, int]] = {}  # (lane, id) -> (round, counter)
    present_before: set[tuple[int, int]] = set()
    for rnd_no in range(ROUNDS):
        lines = kill_at_random(PRODUCER, [path, kind, "single", str(rnd.random()),
                                          str(rnd_no)], rnd, high=0.4)
        acks = [line.split() for line in lines if line.startswith("I ")]
        assert acks, "the child acknowledged nothing before the kill"
        for _, lane, id_, r, c in acks:
            acked[(int(lane), int(id_))] = (int(r), int(c))
        last_c = int(acks[-1][4])

        with open_kind(path, kind) as q:
            snap = snapshot(q, kind)
            keys = [k for k, _ in snap]
            assert keys == expected_order(kind, keys), "iteration is not in dequeue order"
            by_key = dict(snap)
            missing = [k for k in acked if k not in by_key]
            assert not missing, f"round {rnd_no}: acknowledged items lost: {missing[:10]}"
            for k, (r, c) in acked.items():
                assert (by_key[k]["r"], by_key[k]["c"]) == (r, c), f"wrong value at {k}"
            # ids per lane are 1..n with no gap
            for lane in range(3):
                ids = sorted(i for (ln, i) in keys if ln == lane)
                assert ids == list(range(1, len(ids) + 1)), f"lane {lane} ids have gaps"
            # at most the one enqueue in flight at the kill landed without an ack
            extra = set(by_key) - set(acked) - present_before
            assert len(extra) <= 1, f"round {rnd_no}: {len(extra)} unacknowledged items"
            for k in extra:
                assert by_key[k]["r"] == rnd_no and by_key[k]["c"] == last_c + 1
            assert len(q) == len(snap)
            # ids keep counting across the reopen
            lane = 0 if kind == "queue" else rnd_no % 3
            top = max([i for (ln, i) in keys if ln == lane], default=0)
            item = enqueue_to(q, kind, lane, {"r": -1, "c": rnd_no, "pad": ""})
            assert item.id == top + 1
            acked[(lane, item.id)] = (-1, rnd_no)
            present_before = set(by_key) | {(lane, item.id)}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["queue", "priority", "prefix"])
def test_sigkill_during_enqueue_many_is_all_or_nothing(tmp_path, kind):
    path = str(tmp_path / "q")
    rnd = random.Random(f"batch-{kind}")
    acked: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (round, batch) -> keys
    for rnd_no in range(ROUNDS):
        lines = kill_at_random(PRODUCER, [path, kind, "many", str(rnd.random()),
                                          str(rnd_no)], rnd, high=0.25)
        batches = [line.split() for line in lines if line.startswith("B ")]
        assert batches, "the child acknowledged no batch before the kill"
        for _, r, b, size, *pairs in batches:
            keys = [tuple(int(x) for x in p.split(":")) for p in pairs]
            assert len(keys) == int(size)
            acked[(int(r), int(b))] = keys

        with open_kind(path, kind) as q:
            snap = snapshot(q, kind)
            keys = [k for k, _ in snap]
            assert keys == expected_order(kind, keys), "iteration is not in dequeue order"
            by_key = dict(snap)
            for (r, b), batch_keys in acked.items():
                for i, k in enumerate(batch_keys):
                    assert k in by_key, f"acknowledged batch {(r, b)} lost item {k}"
                    v = by_key[k]
                    assert (v["r"], v["b"], v["i"]) == (r, b, i), f"wrong value at {k}"
            # every batch on disk is complete: all of it, or none
            found: dict[tuple[int, int], set[int]] = {}
            sizes: dict[tuple[int, int], int] = {}
            for v in by_key.values():
                found.setdefault((v["r"], v["b"]), set()).add(v["i"])
                sizes[(v["r"], v["b"])] = v["n"]
            for batch, got in found.items():
                assert got == set(range(sizes[batch])), f"batch {batch} is partial: {got}"
            unacked = set(found) - set(acked)
            assert len(unacked) <= 1, f"{unacked} landed without an acknowledgement"
            if unacked:
                ((r, b),) = unacked
                last = int(batches[-1][2])
                assert r == rnd_no and b == last + 1
                # in batch order: one batch may span several lanes
                acked[(r, b)] = [k for k, v in sorted(by_key.items(), key=lambda kv: kv[1]["i"])
                                 if (v["r"], v["b"]) == (r, b)]
            for lane in range(3):
                ids = sorted(i for (ln, i) in keys if ln == lane)
                assert ids == list(range(1, len(ids) + 1)), f"lane {lane} ids have gaps"


# -- (2) dequeue, killed: a dequeued item never comes back -----------------------------------

CONSUMER = CHILD_HEADER + r"""
path, kind, mode, rnd_seed = sys.argv[1:5]
rnd = random.Random(rnd_seed)
q = open_kind(path, kind)
out("ready")
turn = 0
while True:
    try:
        if mode == "single":
            if kind == "prefix":
                item = q.dequeue(PREFIXES[turn % 3])
                turn += 1
            else:
                item = q.dequeue()
            out("D", lane_of(kind, item), item.id)
        else:
            n = rnd.randint(1, 30)
            if kind == "prefix":
                items = q.dequeue_many(PREFIXES[turn % 3], n)
                turn += 1
            else:
                items = q.dequeue_many(n)
            out("D", *(f"{lane_of(kind, it)}:{it.id}" for it in items))
    except dq.Empty:
        if kind == "prefix" and len(q):
            turn += 1
            continue
        out("empty")
        time.sleep(60)
"""

FILL = 20_000  # per lane


def fill(path, kind):
    with open_kind(path, kind) as q:
        for lane in range(1 if kind == "queue" else 3):
            for start in range(0, FILL, 5000):
                values = [{"lane": lane, "n": start + i + 1} for i in range(5000)]
                if kind == "queue":
                    q.enqueue_many(values)
                elif kind == "priority":
                    q.enqueue_many([(PRIOS[lane], v) for v in values])
                else:
                    q.enqueue_many(PREFIXES[lane], values)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind,mode", [("queue", "single"), ("queue", "many"),
                                       ("priority", "single"), ("priority", "many"),
                                       ("prefix", "single"), ("prefix", "many")])
def test_sigkill_during_dequeue_never_brings_an_item_back(tmp_path, kind, mode):
    path = str(tmp_path / "q")
    fill(path, kind)
    lanes = 1 if kind == "queue" else 3
    rnd = random.Random(f"dequeue-{kind}-{mode}")
    printed: set[tuple[int, int]] = set()
    per_call = 1 if mode == "single" else 30
    unprinted_before = 0
    for rnd_no in range(ROUNDS):
        lines = kill_at_random(CONSUMER, [path, kind, mode, str(rnd.randrange(10**6))], rnd,
                               low=0.01, high=0.25)
        for line in lines:
            if line.startswith("D "):
                parts = line.split()[1:]
                if mode == "single":
                    printed.add((int(parts[0]), int(parts[1])))
                else:
                    printed.update(tuple(int(x) for x in p.split(":")) for p in parts)
        with open_kind(path, kind) as q:
            snap = snapshot(q, kind)
            keys = [k for k, _ in snap]
            back = printed & set(keys)
            assert not back, f"round {rnd_no}: dequeued items came back: {sorted(back)[:10]}"
            assert keys == expected_order(kind, keys)
            for (lane, id_), v in snap:
                assert v == {"lane": lane, "n": id_}
            unprinted = 0
            for lane in range(lanes):
                left = [i for (ln, i) in keys if ln == lane]
                gone = [i for (ln, i) in printed if ln == lane]
                # what is left is the tail of the lane: nothing was skipped in between
                assert left == list(range(FILL - len(left) + 1, FILL + 1))
                first = left[0] if left else FILL + 1
                unprinted += first - 1 - len(gone)
            # gone without a print: only what the one call cut short by the kill took
            assert 0 <= unprinted - unprinted_before <= per_call, (rnd_no, unprinted)
            unprinted_before = unprinted
            assert len(q) == len(keys)


# -- (3) reserve, killed: reservations come back at the front with their attempts ----------

RESERVER = CHILD_HEADER + r"""
path, kind, script = sys.argv[1], sys.argv[2], sys.argv[3]
q = open_kind(path, kind)
held = {}

def reserve(lane):
    if kind == "prefix":
        return q.reserve(PREFIXES[lane], lease=600)
    return q.reserve(lease=600)

if script == "loop":
    out("ready")
    while True:
        try:
            it = reserve(0)
        except dq.Empty:
            out("empty")
            time.sleep(120)
        out("R", lane_of(kind, it), it.id, it.attempts)
else:
    for step in json.loads(script):
        op = step[0]
        if op == "reserve":
            it = reserve(step[1])
            out("R", lane_of(kind, it), it.id, it.attempts)
            held[(lane_of(kind, it), it.id)] = it
        elif op == "ack":
            q.ack(held.pop((step[1], step[2])))
            out("A", step[1], step[2])
        elif op == "nack_back":
            q.nack(held.pop((step[1], step[2])), front=False)
            out("N", step[1], step[2])
    out("done", q.in_flight())
    time.sleep(120)
"""


def fill_small(path, kind, n):
    """``n`` items in lane 0 with values ``"v<id>"`` (plus a few in other lanes)."""
    with open_kind(path, kind) as q:
        for i in range(1, n + 1):
            enqueue_to(q, kind, 0, f"v{i}")
        if kind != "queue":
            for lane in (1, 2):
                enqueue_to(q, kind, lane, f"other{lane}")


def reserve_from(q, kind, lane):
    if kind == "prefix":
        return q.reserve(PREFIXES[lane], lease=600)
    return q.reserve(lease=600)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["queue", "priority", "prefix"])
def test_sigkill_with_reservations_returns_them_to_the_front(tmp_path, kind):
    """Reserve 1-4, ack 2, nack 4 to the back (as 11), reserve 5; then SIGKILL."""
    path = str(tmp_path / "q")
    fill_small(path, kind, 10)
    # lane 0 is the first lane in dequeue order for every kind (PRIOS[0] is the lowest)
    script = [["reserve", 0], ["reserve", 0], ["reserve", 0], ["reserve", 0],
              ["ack", 0, 2], ["nack_back", 0, 4], ["reserve", 0]]
    child = faults.Child(RESERVER, path, kind, json.dumps(script))
    lines = child.wait_lines(len(script) + 1, timeout=30)
    child.kill()
    assert child.killed_by_sigkill()
    assert [ln.split()[:3] for ln in lines if ln.startswith("R ")] == [
        ["R", "0", "1"], ["R", "0", "2"], ["R", "0", "3"], ["R", "0", "4"], ["R", "0", "5"]]
    assert lines[-1] == "done 3"  # 1, 3 and 5 in flight; 2 acked; 4 back as 11

    attempts = {1: 1, 3: 1, 5: 1, 11: 1}  # 11 is item 4 nacked to the back, attempts kept
    order = [1, 3, 5, 6, 7, 8, 9, 10, 11]
    values = {i: f"v{i}" for i in order}
    values[11] = "v4"
    for round_no in range(2):
        with open_kind(path, kind) as q:
            assert q.in_flight() == 0
            lane0 = [it for it in q if lane_of(kind, it) == 0]
            assert [it.id for it in lane0] == order, f"round {round_no}: wrong order"
            assert [it.value for it in lane0] == [values[i] for i in order]
            if kind != "queue":
                assert len(q) == len(order) + 2
            # each reservation shows one more attempt than before the kill
            for i in order:
                it = reserve_from(q, kind, 0)
                assert (it.id, it.value) == (i, values[i])
                assert it.attempts == attempts.get(i, 0) + 1, (i, it.attempts)
                attempts[i] = it.attempts
            assert q.in_flight() == len(order)
        # closed with everything in flight: all of it comes back on the next open

        if round_no == 0:
            # a second child reserves the first three and is killed too
            child = faults.Child(RESERVER, path, kind,
                                 json.dumps([["reserve", 0], ["reserve", 0], ["reserve", 0]]))
            lines = child.wait_lines(4, timeout=30)
            child.kill()
            got = [ln.split() for ln in lines if ln.startswith("R ")]
            assert [(int(g[2]), int(g[3])) for g in got] == [
                (i, attempts[i] + 1) for i in order[:3]]
            for i in order[:3]:
                attempts[i] += 1


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["queue", "priority", "prefix"])
def test_sigkill_while_reserving_in_a_loop_loses_nothing(tmp_path, kind):
    path = str(tmp_path / "q")
    n = 5000
    fill_small(path, kind, n)
    rnd = random.Random(f"reserve-loop-{kind}")
    attempts = {i: 0 for i in range(1, n + 1)}
    for rnd_no in range(ROUNDS):
        lines = kill_at_random(RESERVER, [path, kind, "loop"], rnd, low=0.005, high=0.06)
        got = [tuple(int(x) for x in ln.split()[1:]) for ln in lines if ln.startswith("R ")]
        assert got, "the child reserved nothing before the kill"
        # the child reserves from the front, which holds everything left in flight before
        assert [g[1] for g in got] == list(range(1, len(got) + 1))
        for _, id_, att in got:
            assert att == attempts[id_] + 1, (rnd_no, id_, att, attempts[id_])
            attempts[id_] = att
        k = len(got)
        with open_kind(path, kind) as q:
            assert q.in_flight() == 0
            lane0 = [it for it in q if lane_of(kind, it) == 0]
            assert [it.id for it in lane0] == list(range(1, n + 1)), "order changed"
            assert [it.value for it in lane0] == [f"v{i}" for i in range(1, n + 1)]
            held = []
            for i in range(1, min(k + 1, n) + 1):
                it = reserve_from(q, kind, 0)
                assert it.id == i
                if i <= k:
                    assert it.attempts == attempts[i] + 1, (rnd_no, i, it.attempts)
                else:  # reserved when the kill landed: perhaps on disk, never printed
                    assert it.attempts in (attempts[i] + 1, attempts[i] + 2)
                attempts[i] = it.attempts
                held.append(it)
            for it in reversed(held):
                q.nack(it)
            assert q.in_flight() == 0
            lane0 = [it for it in q if lane_of(kind, it) == 0]
            assert [it.id for it in lane0] == list(range(1, n + 1)), "nack changed the order"


# -- (4) sync=True: many writer threads, killed ------------------------------------------

SYNC_WRITERS = CHILD_HEADER + r"""
path = sys.argv[1]
q = dq.Queue(path, sync=True)
go = threading.Event()

def writer(t):
    go.wait()
    c = 0
    while True:
        item = q.enqueue({"t": t, "c": c})
        out("I", t, c, item.id)
        c += 1

threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(8)]
for th in threads:
    th.start()
out("ready")
go.set()
time.sleep(120)
"""


@pytest.mark.timeout(90)
def test_sync_true_eight_threads_killed_keep_every_acknowledged_item(tmp_path):
    path = str(tmp_path / "q")
    rnd = random.Random("sync-threads")
    acked: dict[int, tuple[int, int]] = {}
    for rnd_no in range(3):
        lines = kill_at_random(SYNC_WRITERS, [path], rnd, low=0.05, high=0.4,
                               ready_lines=10)
        rows = [tuple(int(x) for x in ln.split()[1:]) for ln in lines if ln.startswith("I ")]
        assert len(rows) > 8, "the writers acknowledged almost nothing"
        round_acked = {}
        for t, c, id_ in rows:
            assert id_ not in acked and id_ not in round_acked, f"id {id_} given twice"
            round_acked[id_] = (t, c)
        with dq.Queue(path) as q:
            items = list(q)
            ids = [it.id for it in items]
            assert ids == list(range(1, len(ids) + 1)), "ids have gaps or disorder"
            by_id = {it.id: it.value for it in items}
            for id_, (t, c) in {**acked, **round_acked}.items():
                assert id_ in by_id, f"round {rnd_no}: acknowledged item {id_} lost"
                assert by_id[id_] == {"t": t, "c": c}
            extra = set(by_id) - set(acked) - set(round_acked)
            assert len(extra) <= 8, f"{len(extra)} unacknowledged items (8 threads)"
            # each thread's items are in its own order
            for t in range(8):
                cs = [by_id[i]["c"] for i in ids if by_id[i]["t"] == t and i not in acked]
                assert cs == sorted(cs)
            acked = {i: (v["t"], v["c"]) for i, v in by_id.items()}


# -- (5) a live holder: Locked names its pid when it cannot be reached ----------------------
#
# SPEC section 6 lets any number of processes use one directory (the holder serves the others
# over a socket in the directory); ``Locked`` is for a holder that is alive but cannot be
# reached. Here the holder's socket is removed, so a second opener can neither reach the
# holder nor take the directory over.

HOLDER = r"""
import os, signal, sys, time
import diskqueue as dq
q = dq.Queue(sys.argv[1])
signal.signal(signal.SIGUSR1, lambda *_: q._engine._server.close())  # alive, unreachable
if len(q) == 0:
    q.enqueue("held")
os.write(1, f"ready {os.getpid()}\n".encode())
time.sleep(120)
"""

SOCKET = "diskqueue.sock"


@pytest.mark.timeout(90)
def test_unreachable_live_holder_gives_locked_naming_its_pid(tmp_path):
    path = str(tmp_path / "q")
    holder = faults.Child(HOLDER, path)
    try:
        line = holder.wait_lines(1, timeout=30)[0]
        pid = holder.proc.pid
        assert line == f"ready {pid}"
        # A removed socket file comes back within a second: stop the serving instead.
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while os.path.exists(os.path.join(path, SOCKET)):  # nobody can reach it now
            assert time.monotonic() < deadline, "the holder kept serving"
            time.sleep(0.01)
        # another process tries too (at the same time: each may wait for a takeover)
        other = faults.Child(
            """
            import json, sys
            import diskqueue as dq
            try:
                dq.Stack(sys.argv[1])
                print(json.dumps(["opened", None, ""]))
            except dq.Locked as exc:
                print(json.dumps(["Locked", exc.pid, str(exc)]))
            except BaseException as exc:
                print(json.dumps([type(exc).__name__, None, str(exc)]))
            """, path)
        start = time.monotonic()
        with pytest.raises(dq.Locked) as info:
            dq.Queue(path)
        assert time.monotonic() - start < 30, "Locked took too long"
        assert str(pid) in str(info.value), str(info.value)
        assert info.value.pid == pid
        assert isinstance(info.value, dq.DiskQueueError)
        rc, lines = other.finish(timeout=60)
        assert rc == 0, other.stderr
        kind, got_pid, msg = json.loads(lines[-1])
        assert kind == "Locked" and got_pid == pid and str(pid) in msg, (kind, got_pid, msg)
        assert holder.proc.poll() is None, "the holder died"
    finally:
        holder.kill()
    # the refused openers did not disturb the holder's data; the dead holder is replaced
    with dq.Queue(path) as q:
        assert [it.value for it in q] == ["held"]


SHARER = r"""
import json, os, sys
import diskqueue as dq
try:
    q = dq.Queue(sys.argv[1])
except dq.Locked as exc:
    print(json.dumps({"locked": True, "pid": exc.pid, "msg": str(exc)}))
    sys.exit(0)
first = q.peek().value
item = q.enqueue("from the second process")
q.close()
print(json.dumps({"locked": False, "first": first, "id": item.id}))
"""


@pytest.mark.timeout(60)
def test_second_process_opening_a_held_directory_is_served_or_told_who_holds_it(tmp_path):
    """A reachable live holder serves a second opener (SPEC 6); a holder that does not
    serve makes it ``Locked`` naming the holder's pid. Never a crash, never damage."""
    path = str(tmp_path / "q")
    with dq.Queue(path) as q:
        q.enqueue(1)
        res = faults.run_py(SHARER, path, timeout=60)
        assert res.returncode == 0, res.stderr
        got = json.loads(res.stdout.strip().splitlines()[-1])
        if got["locked"]:
            assert got["pid"] == os.getpid() and str(os.getpid()) in got["msg"], got
            expected = [1, 2]
        else:
            assert got["first"] == 1 and got["id"] == 2, got
            expected = [1, "from the second process", 3]
        assert q.enqueue(2 if got["locked"] else 3).id == len(expected)
        assert [it.value for it in q] == expected
    with dq.Queue(path) as q:
        assert [it.value for it in q] == expected


# -- (6) fork: the child's inherited handle reconnects or refuses clearly ------------------

FORKER = r"""
import json, os, sys
import diskqueue as dq

path = sys.argv[1]
q = dq.Queue(path)
q.enqueue("before fork")
pid = os.fork()
if pid == 0:
    report = {}
    for name, call in [
        ("enqueue", lambda: q.enqueue("from the child").id),
        ("len", lambda: len(q)),
        ("peek", lambda: q.peek().value),
        ("iter", lambda: [it.value for it in q]),
    ]:
        try:
            report[name] = ["ok", call()]
        except dq.DiskQueueError as exc:
            report[name] = ["DiskQueueError", type(exc).__name__, str(exc)]
        except BaseException as exc:
            report[name] = ["other", type(exc).__name__, str(exc)]
    try:
        q.close()
        report["close"] = "ok"
    except BaseException as exc:
        report["close"] = ["raised", type(exc).__name__, str(exc)]
    with open(os.path.join(os.path.dirname(path), "child.json"), "w") as fh:
        json.dump(report, fh)
    sys.exit(0)   # a normal interpreter exit: finalizers run in the child
_, status = os.waitpid(pid, 0)
child_rc = os.waitstatus_to_exitcode(status)
q.enqueue("after fork")
first = q.dequeue().value
q.close()
with dq.Queue(path) as q2:
    left = [it.value for it in q2]
print(json.dumps({"child_rc": child_rc, "first": first, "left": left}))
"""


@pytest.mark.timeout(60)
def test_fork_child_reconnects_or_gets_a_clear_error_and_parent_keeps_working(tmp_path):
    path = str(tmp_path / "q")
    res = faults.run_py(FORKER, path, timeout=60)
    assert res.returncode == 0, res.stderr
    parent = json.loads(res.stdout.strip().splitlines()[-1])
    assert parent["child_rc"] == 0, res.stderr
    with open(tmp_path / "child.json") as fh:
        child = json.load(fh)
    assert child["close"] == "ok", child
    modes = {child[name][0] for name in ("enqueue", "len", "peek", "iter")}
    assert modes in ({"ok"}, {"DiskQueueError"}), f"mixed or foreign outcomes: {child}"
    if modes == {"ok"}:  # reconnected to the parent: one shared queue
        assert child["enqueue"][1] == 2
        assert child["len"][1] == 2
        assert child["peek"][1] == "before fork"
        assert child["iter"][1] == ["before fork", "from the child"]
        assert parent["left"] == ["from the child", "after fork"]
    else:  # refused: a DiskQueueError that says why, and nothing written
        for name in ("enqueue", "len", "peek", "iter"):
            assert "fork" in child[name][2], f"{name}: the message does not say why: {child}"
        assert parent["left"] == ["after fork"]
    assert parent["first"] == "before fork"
    assert "Traceback" not in res.stderr, res.stderr
