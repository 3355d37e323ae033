"""The demo: fill a queue, kill the process with SIGKILL, reopen, show nothing was lost.

Run it with ``python -m diskqueue.demo [DIRECTORY]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

from .fifo import Queue


def _produce(path: str) -> None:
    """Child side: enqueue forever, printing the id of each enqueue that returned."""
    q = Queue(path)
    n = 0
    while True:
        n += 1
        item = q.enqueue({"n": n, "payload": "x" * 48})
        sys.stdout.write(f"{item.id}\n")
        sys.stdout.flush()


def run(path: str, acks_before_kill: int = 5000, out=sys.stdout) -> bool:
    """Start a producer, SIGKILL it mid-stream, reopen and check every acknowledged item."""
    child = subprocess.Popen(
        [sys.executable, "-m", "diskqueue.demo", "--produce", path],
        stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    acked: list[int] = []
    for line in child.stdout:
        acked.append(int(line))
        if len(acked) >= acks_before_kill:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    leftover = [int(x) for x in child.stdout.read().split()]
    acked.extend(leftover)
    print(f"producer enqueued {len(acked)} items, then was killed with SIGKILL", file=out)

    started = time.perf_counter()
    with Queue(path) as q:
        elapsed = time.perf_counter() - started
        print(f"reopened {path} in {elapsed * 1000:.1f} ms: {len(q)} items on disk", file=out)
        ids = [item.id for item in q]
    missing = sorted(set(acked) - set(ids))
    in_order = ids == sorted(ids)
    if missing or not in_order:
        print(f"LOST {len(missing)} acknowledged items: {missing[:10]}", file=out)
        return False
    extra = len(ids) - len(set(acked))
    print(f"every acknowledged item is there, in order "
          f"({extra} more were written as the kill landed)", file=out)
    return True


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diskqueue.demo", description=__doc__)
    parser.add_argument("path", nargs="?", help="queue directory (default: a new temp dir)")
    parser.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=5000,
                        help="acknowledged enqueues to wait for before the kill")
    args = parser.parse_args(argv)
    if args.produce:
        _produce(args.path)
        return 0
    path = args.path or os.path.join(tempfile.mkdtemp(prefix="diskqueue-demo-"), "q")
    return 0 if run(path, args.items) else 1


if __name__ == "__main__":
    sys.exit(main())
