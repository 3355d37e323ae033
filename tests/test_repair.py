"""Damaged LevelDB files: ``Corrupted`` says how to repair, and ``diskq repair`` restores a
usable queue. Also ``diskq stats`` in human and JSON form.

The damage is real: bytes overwritten in the middle of table (.ldb), log and MANIFEST
files, or the files truncated, with the queue closed. Values are random bytes, so blocks do
not compress and an overwritten region hits block contents and trailers alike.
"""

from __future__ import annotations

import json
import os
import random

import pytest

import diskqueue as dq
from diskqueue.cli import main as diskq

try:
    from . import faults
except ImportError:
    import faults

N = 3000
GARBAGE = b"\xa5" * 8192  # varints that never end and an invalid block type byte


def build(path: str, *, reopen: bool = True) -> None:
    """``N`` items ``[n, 300 random bytes]``; with ``reopen`` the log becomes a table."""
    rnd = random.Random(7)
    with dq.Queue(path) as q:
        for n in range(1, N + 1):
            q.enqueue([n, rnd.randbytes(300)])
    if reopen:
        with dq.Queue(path):
            pass
    assert faults.files_named(path, ".ldb") or not reopen


def biggest(path: str, suffix: str = "", prefix: str = "") -> str:
    files = faults.files_named(path, suffix, prefix)
    assert files, f"no {prefix}*{suffix} file in {os.listdir(path)}"
    return max(files, key=os.path.getsize)


def ldb_middle(path):
    f = biggest(path, ".ldb")
    faults.overwrite(f, os.path.getsize(f) // 2, GARBAGE)


def ldb_several(path):
    f = biggest(path, ".ldb")
    size = os.path.getsize(f)
    for frac in (0.2, 0.55, 0.8):
        faults.overwrite(f, int(size * frac), GARBAGE[:5000])


def ldb_truncated(path):
    f = biggest(path, ".ldb")
    os.truncate(f, os.path.getsize(f) // 2)


def log_middle(path):
    f = biggest(path, ".log")
    assert os.path.getsize(f) > 100_000
    faults.overwrite(f, os.path.getsize(f) // 2, GARBAGE)


def manifest_garbage(path):
    f = biggest(path, prefix="MANIFEST-")
    size = os.path.getsize(f)
    faults.overwrite(f, size // 3, GARBAGE[: max(8, size // 3)])


def manifest_truncated(path):
    f = biggest(path, prefix="MANIFEST-")
    os.truncate(f, os.path.getsize(f) // 2)


# (damage, build with reopen, fewest items that must survive the repair)
DAMAGE = {
    "ldb-middle": (ldb_middle, True, int(N * 0.9)),
    "ldb-several": (ldb_several, True, int(N * 0.8)),
    "ldb-truncated": (ldb_truncated, True, 0),
    "log-middle": (log_middle, False, int(N * 0.9)),
    "manifest-garbage": (manifest_garbage, True, N),
    "manifest-truncated": (manifest_truncated, True, N),
}


def read_all(path: str) -> list:
    """Open and read every item (iteration, then peeks and a dequeue of each)."""
    with dq.Queue(path) as q:
        values = [it.value for it in q]
        for offset in range(len(q)):
            q.peek_by_offset(offset)
        return values


def expect_corrupted(path: str) -> dq.Corrupted:
    with pytest.raises(dq.Corrupted) as info:
        read_all(path)
    real = os.path.realpath(path)
    assert f"diskq repair {real}" in str(info.value), str(info.value)
    assert isinstance(info.value, dq.DiskQueueError)
    return info.value


def check_usable(path: str, minimum: int) -> list[int]:
    """After repair: survivors readable in order, enqueue/dequeue work, no Corrupted."""
    with dq.Queue(path) as q:
        values = [it.value for it in q]
        numbers = [v[0] for v in values]
        assert numbers == sorted(set(numbers)), "survivors are out of order or repeated"
        assert set(numbers) <= set(range(1, N + 1))
        assert len(numbers) >= minimum, f"only {len(numbers)} of {N} items survived"
        assert len(q) == len(values)
        for v in values:
            assert isinstance(v[1], bytes) and len(v[1]) == 300
        new = q.enqueue([N + 1, b"n" * 300])
        assert q.peek_by_id(new.id).value == [N + 1, b"n" * 300]
        got = [q.dequeue().value[0] for _ in range(len(values) + 1)]
        assert got == numbers + [N + 1]
        with pytest.raises(dq.Empty):
            q.dequeue()
        q.enqueue_many([[N + 2, b""], [N + 3, b""]])
        it = q.reserve()
        q.ack(it)
    with dq.Queue(path) as q:
        assert [it.value[0] for it in q] == [N + 3]
    return numbers


@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_files_raise_corrupted_and_repair_restores(tmp_path, damage):
    path = str(tmp_path / "q")
    mutate, reopen, minimum = DAMAGE[damage]
    build(path, reopen=reopen)
    mutate(path)
    expect_corrupted(path)
    assert diskq(["repair", path]) == 0
    check_usable(path, minimum)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", ["ldb-middle", "log-middle"])
def test_console_repair_in_a_subprocess(tmp_path, damage):
    path = str(tmp_path / "q")
    mutate, reopen, minimum = DAMAGE[damage]
    build(path, reopen=reopen)
    mutate(path)
    expect_corrupted(path)
    res = faults.run_module("diskqueue", "repair", path, timeout=60)
    assert res.returncode == 0, res.stderr
    assert path in res.stdout or os.path.realpath(path) in res.stdout
    res = faults.run_module("diskqueue", "repair", path, "--json", timeout=60)
    assert res.returncode == 0, res.stderr
    assert isinstance(json.loads(res.stdout), dict)
    check_usable(path, minimum)


@pytest.mark.timeout(60)
def test_repair_keeps_item_ids_and_ids_keep_counting(tmp_path):
    """Ids are the items' names (peek_by_id, update, ack by id): after a repair the
    survivors keep theirs and new ids continue after every id already handed out."""
    path = str(tmp_path / "q")
    build(path)
    ldb_middle(path)
    expect_corrupted(path)
    assert diskq(["repair", path]) == 0
    with dq.Queue(path) as q:
        items = list(q)
        assert len(items) < N  # the damage did cost items
        renamed = [(it.id, it.value[0]) for it in items if it.id != it.value[0]]
        assert not renamed, f"{len(renamed)} survivors changed id, e.g. {renamed[:3]}"
        assert q.enqueue([0, b""]).id == N + 1, "ids after the repair reuse old ids"


@pytest.mark.timeout(60)
def test_corrupted_from_a_cli_command_says_how_to_repair(tmp_path, capsys):
    path = str(tmp_path / "q")
    build(path)
    manifest_garbage(path)
    assert diskq(["stats", path]) == 1
    err = capsys.readouterr().err
    assert f"diskq repair {os.path.realpath(path)}" in err, err
    assert diskq(["repair", path]) == 0
    capsys.readouterr()
    assert diskq(["stats", path]) == 0
    assert str(N) in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_repair_of_a_directory_held_by_a_live_process_is_refused(tmp_path):
    path = str(tmp_path / "q")
    with dq.Queue(path) as q:
        q.enqueue_many(range(10))
    holder = faults.Child(
        "import os, sys, time, diskqueue as dq\n"
        "q = dq.Queue(sys.argv[1])\n"
        "os.write(1, b'ready\\n')\n"
        "time.sleep(120)\n", path)
    try:
        holder.wait_lines(1, timeout=30)
        res = faults.run_module("diskqueue", "repair", path, timeout=60)
        assert res.returncode == 1, (res.stdout, res.stderr)
        assert str(holder.proc.pid) in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    finally:
        holder.kill()
    with dq.Queue(path) as q:
        assert [it.value for it in q] == list(range(10))


@pytest.mark.timeout(30)
def test_repair_of_something_that_is_not_a_queue_fails_cleanly(tmp_path):
    missing = str(tmp_path / "missing")
    afile = tmp_path / "afile"
    afile.write_bytes(b"x")
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (missing, str(afile), str(empty)):
        res = faults.run_module("diskqueue", "repair", target, timeout=60)
        assert res.returncode == 1, (target, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
    assert not os.path.exists(missing)
    assert afile.read_bytes() == b"x"
    assert os.listdir(empty) == []


# -- diskq stats ------------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_stats_human_and_json(tmp_path, capsys):
    path = str(tmp_path / "q")
    q = dq.Queue(path)
    try:
        q.enqueue_many(["a", "b", "c", "d", "e"])
        q.dequeue()
        q.reserve()
        q.reserve()
        assert diskq(["stats", path]) == 0
        out = capsys.readouterr().out
        assert "2 ready" in out and "2 reserved" in out, out
        assert diskq(["stats", path, "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        counts = list(data.values())
        assert len(counts) == 1, data
        assert counts[0]["ready"] == 2 and counts[0]["reserved"] == 2, data
    finally:
        q.close()
    # closed: the reservations are back
    assert diskq(["stats", path, "--json"]) == 0
    (counts,) = json.loads(capsys.readouterr().out).values()
    assert counts["ready"] == 4 and counts["reserved"] == 0
    # the console form, in a subprocess
    res = faults.run_module("diskqueue", "stats", path, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "4 ready" in res.stdout and "0 reserved" in res.stdout, res.stdout
    res = faults.run_module("diskqueue", "stats", path, "--json", timeout=60)
    assert res.returncode == 0, res.stderr
    (counts,) = json.loads(res.stdout).values()
    assert counts["ready"] == 4 and counts["reserved"] == 0
    # stats changed nothing
    with dq.Queue(path) as q:
        assert [it.value for it in q] == ["b", "c", "d", "e"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["priority", "prefix"])
def test_stats_of_priority_and_prefix_queues(tmp_path, capsys, kind):
    path = str(tmp_path / "q")
    if kind == "priority":
        with dq.PriorityQueue(path) as q:
            q.enqueue_many([(1, "a"), (2, "b"), (-7, "c")])
    else:
        with dq.PrefixQueue(path) as q:
            q.enqueue("x", 1)
            q.enqueue_many("y", [2, 3])
    assert diskq(["stats", path, "--json"]) == 0
    (counts,) = json.loads(capsys.readouterr().out).values()
    assert counts["ready"] == 3 and counts["reserved"] == 0
    assert diskq(["stats", path]) == 0
    assert "3 ready" in capsys.readouterr().out


@pytest.mark.timeout(30)
def test_stats_of_a_missing_path_creates_nothing(tmp_path, capsys):
    """An inspection command must not create a database where a typo pointed it."""
    missing = str(tmp_path / "typo")
    rc = diskq(["stats", missing])
    capsys.readouterr()
    assert not os.path.exists(missing), "diskq stats created the directory"
    assert rc == 1
