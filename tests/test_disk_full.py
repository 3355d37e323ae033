"""A full disk, once, loses nothing: writes after it are durable, nothing dequeued returns.

The disk fills for real: a child process lowers ``RLIMIT_FSIZE`` (with ``SIGXFSZ``
ignored, so a write past it fails with ``EFBIG`` as a full disk fails with ``ENOSPC``),
or, as root, a small tmpfs is mounted for the test and filled. A failed log append
leaves part of a record in LevelDB's log; before the fix every later write sat behind
it, and the next open raised ``Corrupted`` (after a repair, the later items were gone
and the dequeued ones back).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

import diskqueue as dq

try:
    from . import faults
except ImportError:
    import faults

FILL_CHILD = r"""
import json, os, resource, signal, sys
import diskqueue as dq

path, sync = sys.argv[1], sys.argv[2] == "1"
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
acked, taken = [], []
q = dq.Queue(path, codec="raw", sync=sync)
first = [b"first%d" % i for i in range(10)]
q.enqueue_many(first)
acked += first
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
errors = []
i = 0
while True:
    value = b"fill%d-" % i + b"y" * 1000
    try:
        q.enqueue(value)
    except dq.DiskQueueError as exc:
        errors.append(str(exc))
        break
    acked.append(value)
    i += 1
length_after = len(q) - len(acked)  # 0: len() counts exactly what was acknowledged
try:
    q.enqueue_many([b"many"] * 300)  # 300 KB: more than the limit allows at once
except dq.DiskQueueError as exc:
    errors.append(str(exc))
else:
    acked += [b"many"] * 300
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
for i in range(100):
    value = b"after%d" % i
    q.enqueue(value)
    acked.append(value)
for _ in range(5):
    taken.append(q.dequeue().value)
q.close()
print(json.dumps({"acked": [v.decode() for v in acked], "taken": [v.decode() for v in taken],
                  "errors": errors, "length_after": length_after}))
"""


def _check_reopened(path: str, acked: list[str], taken: list[str]) -> None:
    assert taken == acked[:5]
    with dq.Queue(path, codec="raw") as q:
        left = [item.value.decode() for item in q]
        assert left == acked[5:], (
            f"{len(left)} items after reopening, {len(acked) - 5} acknowledged and not taken"
        )


@pytest.mark.parametrize("sync", [False, True], ids=["sync=False", "sync=True"])
@pytest.mark.timeout(120)
def test_writes_after_a_full_disk_survive_reopen(tmp_path, sync):
    path = str(tmp_path / "q")
    done = faults.run_py(FILL_CHILD, path, "1" if sync else "0")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert "the disk is full" in report["errors"][0], report["errors"]
    assert report["length_after"] == 0
    _check_reopened(path, report["acked"], report["taken"])
    # and again: a second open after a clean close, then a write, is still whole
    with dq.Queue(path, codec="raw") as q:
        q.enqueue(b"later")
    with dq.Queue(path, codec="raw") as q:
        assert [i.value for i in q][-1] == b"later"


TMPFS_CHILD = r"""
import json, os, sys
import diskqueue as dq

mnt, sync = sys.argv[1], sys.argv[2] == "1"
path = os.path.join(mnt, "q")
acked, taken, errors = [], [], []
q = dq.Queue(path, codec="raw", sync=sync)
q.enqueue_many([b"first%d" % i for i in range(10)])
acked += [b"first%d" % i for i in range(10)]
filler = os.path.join(mnt, "filler")
with open(filler, "wb") as fh:  # leave ~300 KB: less than LevelDB's table for its buffer
    while os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize > 300_000:
        fh.write(b"f" * 4096)
        fh.flush()
i = 0
while True:
    value = b"fill%d-" % i + b"y" * 1000
    try:
        q.enqueue(value)
    except dq.DiskQueueError as exc:
        errors.append(str(exc))
        break
    acked.append(value)
    i += 1
refused = 0
for _ in range(5):  # still full: refused with a clear error, nothing written
    try:
        q.enqueue(b"still full")
    except dq.DiskQueueError as exc:
        refused += 1
        errors.append(str(exc))
    else:
        acked.append(b"still full")
os.unlink(filler)
for i in range(100):
    value = b"after%d" % i
    q.enqueue(value)
    acked.append(value)
for _ in range(5):
    taken.append(q.dequeue().value)
q.close()
print(json.dumps({"acked": [v.decode() for v in acked], "taken": [v.decode() for v in taken],
                  "errors": errors, "refused": refused}))
"""


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MB tmpfs mounted for the test (root only), unmounted after."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.parametrize("sync", [False, True], ids=["sync=False", "sync=True"])
@pytest.mark.timeout(120)
def test_a_disk_that_stays_full_refuses_writes_then_recovers(small_tmpfs, sync):
    """While LevelDB cannot even flush its buffer, every write is refused (not lost);
    once space is back, the next write reopens LevelDB and all of it is kept."""
    done = faults.run_py(TMPFS_CHILD, small_tmpfs, "1" if sync else "0")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert all("disk is full" in e for e in report["errors"]), report["errors"]
    assert report["refused"] == 5
    _check_reopened(os.path.join(small_tmpfs, "q"), report["acked"], report["taken"])


THREADS_CHILD = r"""
import json, os, sys, threading, time
import diskqueue as dq

mnt = sys.argv[1]
path = os.path.join(mnt, "q")
durable = dq.Queue(path, codec="raw", sync=True)
plain = dq.Queue(path, codec="raw")
acked, taken, errors = [], [], []
lock = threading.Lock()
stop = time.monotonic() + 4


def writer(i, q):
    n = 0
    while time.monotonic() < stop:
        value = b"%d-%d-" % (i, n) + b"y" * 500
        try:
            q.enqueue(value)
            with lock:
                acked.append(value)
        except dq.DiskQueueError as exc:
            with lock:
                errors.append(str(exc))
        n += 1
        time.sleep(0.002)


def reader(q):
    while time.monotonic() < stop:
        try:
            value = q.dequeue().value
            with lock:
                taken.append(value)
        except dq.Empty:
            time.sleep(0.001)
        except dq.DiskQueueError as exc:
            with lock:
                errors.append(str(exc))
            time.sleep(0.001)


def filler():  # rounds of a full disk: fill it, hold it full a while, free it
    name = os.path.join(mnt, "filler")
    while time.monotonic() < stop - 0.5:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while True:
                os.write(fd, b"f" * 65536)
        except OSError:
            pass
        finally:
            os.close(fd)
        time.sleep(0.4)
        os.unlink(name)
        time.sleep(0.4)


threads = [threading.Thread(target=writer, args=(i, durable if i % 2 else plain))
           for i in range(4)]
threads += [threading.Thread(target=reader, args=(q,)) for q in (durable, plain)]
threads.append(threading.Thread(target=filler))
for t in threads:
    t.start()
for t in threads:
    t.join()
durable.close()
plain.close()
print(json.dumps({"acked": [v.decode() for v in acked], "taken": [v.decode() for v in taken],
                  "errors": errors}))
"""


@pytest.mark.timeout(120)
def test_rounds_of_a_full_disk_under_threads_lose_and_repeat_nothing(tmp_path):
    """Writers (sync=True and not), readers and the disk filling and emptying at once."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # Far bigger than the queue ever gets (LevelDB's log and the table it flushes it to
    # take up to 4 MB each), so that once the filler is gone there is room to reopen.
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        done = faults.run_py(THREADS_CHILD, str(mnt), timeout=100)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]  # no thread died
        report = json.loads(done.stdout)
        assert report["errors"], "the disk never filled"
        assert all("disk is full" in e for e in report["errors"]), set(report["errors"])
        taken = report["taken"]
        assert len(taken) == len(set(taken)), "an item was dequeued twice"
        assert set(taken) <= set(report["acked"])
        listing = {name: os.path.getsize(mnt / "q" / name) for name in os.listdir(mnt / "q")}
        assert not (mnt / "filler").exists()
        try:
            with dq.Queue(str(mnt / "q"), codec="raw") as q:
                left = [item.value.decode() for item in q]
        except dq.DiskQueueError as exc:
            raise AssertionError(f"{exc}; the directory held {listing}") from exc
        assert len(left) == len(set(left))
        assert set(left) == set(report["acked"]) - set(taken)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
