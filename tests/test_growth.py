"""Memory and disk stay flat under long churn with reservations.

Before the fix, 1M ``reserve(lease=3600)`` + ``ack`` grew the owner's RSS by ~196 MiB
(every acked lease stayed in the lease heap until it would have expired), and churn with
one item reserved at the head (a running task holds exactly that) grew the directory to
~19.5 MB over 800k operations against 32 KiB without it (nothing consumed above the
reserved item was ever compacted).
"""

from __future__ import annotations

import json

import pytest

import diskqueue as dq

try:
    from . import faults
except ImportError:
    import faults

MB = 1024 * 1024

LEASES = r"""
import json, sys
import diskqueue as dq

def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096

q = dq.Queue(sys.argv[1], codec="raw")
q.enqueue_many([b"v" * 32] * 100)
for _ in range(20_000):  # warm up: allocator pools, the first compaction
    q.enqueue(b"v" * 32)
    q.ack(q.reserve(lease=3600))
before = rss()
for _ in range(int(sys.argv[2])):
    q.enqueue(b"v" * 32)
    q.ack(q.reserve(lease=3600))
print(json.dumps({"grew": rss() - before, "heap": len(q._engine._leases),
                  "in_flight": q.in_flight(), "len": len(q)}))
q.close()
"""


@pytest.mark.timeout(240)
def test_acked_leases_do_not_grow_memory(tmp_path):
    n = 200_000
    done = faults.run_py(LEASES, str(tmp_path / "q"), str(n), timeout=230)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["in_flight"] == 0 and out["len"] == 100
    # ~200 bytes per stale heap entry before the fix: ~40 MiB for 200k
    assert out["heap"] < 1000, f"{out['heap']} lease entries for 0 reservations in flight"
    assert out["grew"] < 8 * MB, f"RSS grew {out['grew'] / MB:.1f} MiB over {n} reserve+ack"


def test_live_leases_still_expire_after_the_heap_is_pruned(tmp_path):
    """Pruning keeps the entries of reservations still held: their leases run out."""
    with dq.Queue(tmp_path / "q", codec="raw") as q:
        q.enqueue_many([b"%d" % i for i in range(300)])
        kept = [q.reserve(lease=0.3) for _ in range(3)]
        for _ in range(200):  # enough acks to prune the heap several times
            q.ack(q.reserve(lease=3600))
        assert q.in_flight() == 3
        assert len(q._engine._leases) < 100
        q.enqueue(b"x")
        import time

        time.sleep(0.4)
        assert q.in_flight() == 0
        assert [q.dequeue().value for _ in range(3)] == [k.value for k in kept]


def _churn(path: str, hold: bool, pairs: int) -> tuple[int, int]:
    """``pairs`` enqueue+dequeue with (or without) one item reserved at the head all
    along; the directory's peak size while running and its size after closing."""
    peak = 0
    with dq.Queue(path, codec="raw") as q:
        q.enqueue(b"the task")
        held = q.reserve(lease=3600) if hold else None
        for i in range(pairs):
            q.enqueue(b"v" * 32)
            q.dequeue()
            if i % 1_000 == 0:  # often: the log and level-0 files rise and fall in steps
                peak = max(peak, faults.dir_size(path))
        if held is not None:
            assert q.in_flight() == 1
            q.ack(held)
    return peak, faults.dir_size(path)


@pytest.mark.timeout(240)
def test_a_reservation_at_the_head_does_not_stop_compaction(tmp_path):
    pairs = 100_000  # 200k operations
    free_peak, free_after = _churn(str(tmp_path / "free"), False, pairs)
    held_peak, held_after = _churn(str(tmp_path / "held"), True, pairs)
    # the same churn, with and without the reservation, takes about the same room
    assert held_peak < free_peak + 2 * MB, (
        f"peak {held_peak / MB:.1f} MB with one item reserved at the head, "
        f"{free_peak / MB:.1f} MB without")
    assert held_after < free_after + 1 * MB, (
        f"{held_after / MB:.2f} MB after closing with the reservation, "
        f"{free_after / MB:.2f} MB without")
