#!/usr/bin/env python
"""diskqueue benchmarks: every figure next to raw plyvel doing the same work in the same run.

    python benchmarks/run.py [--quick] [--only NAME[,NAME...]] [--markdown]

Progress goes to stderr, the table to stdout. Rates: median of the rounds, and p90 = the rate
of the slow-side 90th-percentile round; times and sizes: median and 90th percentile.
"vs raw" is the median over rounds of (figure / raw plyvel's figure in the same round), so
drift of the shared machine cancels out.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import diskqueue as dq  # noqa: E402

try:
    import plyvel
except ImportError:  # Python 3.13+
    import plyvel_next as plyvel  # type: ignore[no-redef]

SEED = 20240611
B = 100  # batch size of the batch and disk cases
FULL = dict(n=200_000, rounds=7, big=10_000_000, churn=10_000_000, sync_secs=2.0,
            sync_rounds=7, peer_n=20_000, slow_n=5_000, peer_rounds=3)
QUICK = dict(n=50_000, rounds=3, big=1_000_000, churn=1_000_000, sync_secs=1.0,
             sync_rounds=2, peer_n=5_000, slow_n=1_000, peer_rounds=2)
_rng = random.Random(SEED)
VALUES = [_rng.randbytes(64) for _ in range(FULL["n"])]  # also the pool for big builds
PRIOS = [_rng.randrange(10) for _ in range(FULL["n"])]
PREFIX_SEQ = [b"tenant-%04d" % _rng.randrange(1000) for _ in range(FULL["n"])]
Subject = Callable[[str, int], dict]  # (fresh dir, size) -> {metric: figure}


# -- harness -------------------------------------------------------------------------------
@dataclass
class Row:
    case: str
    what: str
    unit: str  # "ops/s", "x" (higher is better); "s", "MB" (lower is better)
    vals: list[float]
    raw: list[float] | None = None
    target: str = ""
    ok: Callable[[Row], bool] | None = None
    note: str = ""
    ratio_ok: bool = True  # False where figure / raw means nothing (near-zero deltas)

    @property
    def median(self) -> float:
        return statistics.median(self.vals)

    @property
    def p90(self) -> float:
        xs = sorted(self.vals, reverse=self.unit in ("ops/s", "x"))
        pos = 0.9 * (len(xs) - 1)
        lo, hi = int(pos), min(int(pos) + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    @property
    def ratio(self) -> float | None:
        if not self.raw or not self.ratio_ok:
            return None
        if len(self.raw) == len(self.vals) and all(self.raw):
            return statistics.median(a / b for a, b in zip(self.vals, self.raw, strict=True))
        return self.median / statistics.median(self.raw)


def vs_raw(x: float) -> dict:
    return {"target": f">= {x}x raw", "ok": lambda r: r.ratio >= x}


def below(x: float, unit: str) -> dict:
    return {"target": f"< {x} {unit}", "ok": lambda r: r.median < x}


@contextlib.contextmanager
def fresh_dir():
    d = tempfile.mkdtemp(prefix="dqbench-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def rate(n: int, work: Callable[[], object]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    work()
    return n / (time.perf_counter() - t0)


def measure(subjects: dict[str, tuple[Subject, int]], rounds: int) -> dict[str, dict]:
    """Warm each subject up at a tenth of its size, then run all of them ``rounds`` times,
    interleaved (order reversed every other round), each run in a fresh directory."""
    for fn, n in subjects.values():
        with fresh_dir() as d:
            fn(d, max(n // 10, 100))
    out: dict[str, dict[str, list[float]]] = {name: {} for name in subjects}
    for r in range(rounds):
        for name in list(subjects)[:: 1 if r % 2 == 0 else -1]:
            fn, n = subjects[name]
            with fresh_dir() as d:
                for metric, value in fn(d, n).items():
                    out[name].setdefault(metric, []).append(value)
    return out


def phases(setup: Callable[[str, int], tuple]) -> Subject:
    """A subject from ``setup(dir, n) -> (enqueue_work, dequeue_work, close)``."""
    def run(d: str, n: int) -> dict[str, float]:
        enq, deq, close = setup(d, n)
        try:
            return {"enqueue": rate(n, enq), "dequeue": rate(n, deq)}
        finally:
            close()
    return run


def dir_size(path: str) -> int:
    total = 0
    for entry in os.scandir(path):
        with contextlib.suppress(OSError):  # LevelDB deletes files while we look
            total += entry.stat().st_size
    return total


# -- subjects: raw plyvel, diskqueue and the peers ------------------------------------------
def open_raw(d: str):
    return plyvel.DB(os.path.join(d, "raw"), create_if_missing=True)


@phases
def raw_fifo(d: str, n: int) -> tuple:
    db, vals = open_raw(d), VALUES[:n]
    put, get, delete = db.put, db.get, db.delete

    def enq():
        for i, v in enumerate(vals, 1):
            put(i.to_bytes(8, "big"), v)

    def deq():
        for i in range(1, n + 1):
            get(k := i.to_bytes(8, "big"))
            delete(k)
    return enq, deq, db.close


def raw_lanes(lanes_of: Callable[[int], list[bytes]], in_order: bool) -> Subject:
    """Raw puts under ``lane + seq`` keys, then get+delete of each in dequeue order."""
    @phases
    def setup(d: str, n: int) -> tuple:
        db, vals, lanes = open_raw(d), VALUES[:n], lanes_of(n)
        order = lanes if in_order else sorted(lanes)
        put, get, delete = db.put, db.get, db.delete
        tails: dict[bytes, int] = {}
        heads: dict[bytes, int] = {}

        def enq():
            for lane, v in zip(lanes, vals, strict=True):
                tails[lane] = s = tails.get(lane, 0) + 1
                put(lane + s.to_bytes(8, "big"), v)

        def deq():
            for lane in order:
                heads[lane] = s = heads.get(lane, 0) + 1
                get(k := lane + s.to_bytes(8, "big"))
                delete(k)
        return enq, deq, db.close
    return setup


def api(make: Callable[[str], object], put: str, get: str, close: str | None = None,
        lanes_of: Callable[[int], list] | None = None, by_lane: bool = False) -> Subject:
    """One-at-a-time ``put(value)`` (or ``put(lane, value)``) n times, then ``get()`` (or
    ``get(lane)``) n times, on any queue-like object: diskqueue's or a peer's."""
    @phases
    def setup(d: str, n: int) -> tuple:
        obj, vals = make(os.path.join(d, "q")), VALUES[:n]
        p, g, lanes = getattr(obj, put), getattr(obj, get), lanes_of(n) if lanes_of else None

        def enq():
            if lanes is None:
                for v in vals:
                    p(v)
            else:
                for lane, v in zip(lanes, vals, strict=True):
                    p(lane, v)

        def deq():
            if by_lane:
                for lane in lanes:
                    g(lane)
            else:
                for _ in range(n):
                    g()
        return enq, deq, getattr(obj, close) if close else lambda: None
    return setup


def dq_queue(codec: str = "raw") -> Subject:
    return api(lambda p: dq.Queue(p, codec=codec), "enqueue", "dequeue", "close")


def raw_put_batch(db, first: int, vals: list[bytes]) -> None:
    wb = db.write_batch()
    for i, v in enumerate(vals, first):
        wb.put(i.to_bytes(8, "big"), v)
    wb.write()


def raw_take_batch(db, first: int, count: int) -> list:
    with db.iterator(start=first.to_bytes(8, "big")) as it:
        got = list(itertools.islice(it, count))
    wb = db.write_batch()
    for k, _ in got:
        wb.delete(k)
    wb.write()
    return got


def batches(n: int, put: Callable[[int, list[bytes]], object],
            take: Callable[[int], object]) -> tuple:
    """Work of n items in batches of B: ``put(first, values)``, then ``take(first)``.
    Results are dropped as they come, as a consumer would (keeping them all would time
    the allocator)."""
    def enq() -> None:
        for j in range(0, n, B):
            put(j + 1, VALUES[j:j + B])

    def deq() -> None:
        for j in range(0, n, B):
            take(j + 1)
    return enq, deq


@phases
def raw_batch(d: str, n: int) -> tuple:
    db = open_raw(d)
    return (*batches(n, lambda first, vals: raw_put_batch(db, first, vals),
                     lambda first: raw_take_batch(db, first, B)), db.close)


@phases
def dq_batch(d: str, n: int) -> tuple:
    q = dq.Queue(os.path.join(d, "q"), codec="raw")
    return (*batches(n, lambda _, vals: q.enqueue_many(vals), lambda _: q.dequeue_many(B)),
            q.close)


# -- cases ---------------------------------------------------------------------------------
def case_fifo(cfg: dict) -> list[Row]:
    n = cfg["n"]
    res = measure({"raw": (raw_fifo, n), "dq": (dq_queue(), n),
                   "msgpack": (dq_queue("msgpack"), n)}, cfg["rounds"])
    raw, q, mp = res["raw"], res["dq"], res["msgpack"]
    return [
        Row("1 fifo", f"Queue.enqueue x{n:,}", "ops/s", q["enqueue"], raw["enqueue"],
            **vs_raw(0.5), note="raw: db.put of 8-byte keys"),
        Row("1 fifo", "  same, codec=msgpack", "ops/s", mp["enqueue"], raw["enqueue"]),
        Row("2 fifo", f"Queue.dequeue x{n:,}", "ops/s", q["dequeue"], raw["dequeue"],
            **vs_raw(0.6), note="raw: db.get + db.delete"),
        Row("2 fifo", "  same, codec=msgpack", "ops/s", mp["dequeue"], raw["dequeue"]),
    ]


def pair_case(case: str, label: str, raw: Subject, ours: Subject, x: float,
              notes: tuple[str, str]) -> Callable[[dict], list[Row]]:
    """A case timing ``ours`` against ``raw``, enqueue then dequeue, target >= x * raw."""
    def run(cfg: dict) -> list[Row]:
        n = cfg["n"]
        res = measure({"raw": (raw, n), "dq": (ours, n)}, cfg["rounds"])
        return [Row(case, label.format(op=op, n=n), "ops/s", res["dq"][op], res["raw"][op],
                    **vs_raw(x), note=note) for op, note in zip(("enqueue", "dequeue"), notes,
                                                                   strict=True)]
    return run


PROBE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import psutil
if sys.argv[2] == "dq":
    import diskqueue as dq
    open_ = lambda: dq.Queue(sys.argv[3], codec="raw")
else:
    try:
        import plyvel
    except ImportError:
        import plyvel_next as plyvel
    open_ = lambda: plyvel.DB(sys.argv[3])
t0 = time.perf_counter()
h = open_()
took = time.perf_counter() - t0
print(json.dumps({"s": took, "rss": psutil.Process().memory_info().rss / 2**20}))
h.close()
"""


def probe(kind: str, path: str) -> dict:
    """Open ``path`` in a fresh interpreter; time the open and read RSS right after it."""
    out = subprocess.run([sys.executable, "-c", PROBE, ROOT, kind, path],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def case_open(cfg: dict) -> list[Row]:
    n = cfg["big"]
    with fresh_dir() as top:
        full, empty = os.path.join(top, "full"), os.path.join(top, "empty")
        dq.Queue(empty, codec="raw").close()
        t0 = time.perf_counter()
        with dq.Queue(full, codec="raw") as q:
            for j in range(0, n, 1000):
                k = j % len(VALUES)
                q.enqueue_many(VALUES[k:k + 1000])
        build, size = time.perf_counter() - t0, dir_size(full) / 2**20
        res = measure({f"{k} {p}": (lambda d, _, k=k, p=p: probe(k, p), 0)
                       for k in ("dq", "raw") for p in (full, empty)}, cfg["rounds"])
    full_, empty_ = (res[f"dq {p}"] for p in (full, empty))
    raw_full, raw_empty = (res[f"raw {p}"] for p in (full, empty))
    delta = lambda a, b: [x - y for x, y in zip(a["rss"], b["rss"], strict=True)]  # noqa: E731
    return [
        Row("6 open", f"open Queue of {n:,} items", "s", full_["s"], raw_full["s"],
            **below(0.1, "s"), note=f"fresh process; raw: plyvel.DB on the same dir "
            f"({size:,.0f} MB, built in {build:.0f} s with enqueue_many(1000))"),
        Row("6 open", "open empty Queue", "s", empty_["s"], raw_empty["s"]),
        Row("6 open", f"RSS after opening {n:,} items", "MB", full_["rss"], raw_full["rss"],
            note="whole process, right after open"),
        Row("6 open", "  RSS full - RSS empty", "MB", delta(full_, empty_),
            delta(raw_full, raw_empty), target="within 5 MB", ok=lambda r: abs(r.median) <= 5,
            ratio_ok=False, note="raw column: the same difference for plyvel.DB"),
    ]


def churn(d: str, pairs: int, use_dq: bool) -> tuple[float, float, float]:
    """Enqueue+dequeue ``pairs`` items in batches of B with ~1,000 live: rate, max MB, end MB."""
    path, pos = os.path.join(d, "q"), [1, 1]  # raw: tail, head
    if use_dq:
        q = dq.Queue(path, codec="raw")
        put, take, close = q.enqueue_many, lambda: q.dequeue_many(B), q.close
    else:
        db = plyvel.DB(path, create_if_missing=True)
        close = db.close

        def put(vals):
            raw_put_batch(db, pos[0], vals)
            pos[0] += len(vals)

        def take():
            pos[1] += len(raw_take_batch(db, pos[1], B))
    put(VALUES[:1000])
    sizes, t0 = [], time.perf_counter()
    for i in range(pairs // B):
        k = i * B % len(VALUES)
        put(VALUES[k:k + B])
        take()
        if (i + 1) % (100_000 // B) == 0:
            sizes.append(dir_size(path))
    took, end = time.perf_counter() - t0, dir_size(path)
    close()
    return pairs / took, max(sizes + [end]) / 2**20, end / 2**20


def case_disk(cfg: dict) -> list[Row]:
    pairs, res = cfg["churn"], {}
    for name in ("raw", "dq"):
        with fresh_dir() as d:
            res[name] = churn(d, pairs, name == "dq")
    (r_rate, r_max, r_end), (q_rate, q_max, q_end) = res["raw"], res["dq"]
    return [
        Row("7 disk", f"max dir size, {pairs:,} pairs, ~1k live", "MB", [q_max], [r_max],
            **below(8, "MB"), note=f"one run; enqueue_many/dequeue_many({B}); "
            "size sampled every 100k pairs"),
        Row("7 disk", "  dir size at the end", "MB", [q_end], [r_end], **below(8, "MB")),
        Row("7 disk", "  enqueue+dequeue pairs", "ops/s", [q_rate], [r_rate], note="pairs/s"),
    ]


def sync_run(d: str, ms: int, threads: int, use_dq: bool) -> dict[str, float]:
    """``threads`` threads writing with sync=True for ``ms`` milliseconds: total writes/s."""
    v, counts, seq = VALUES[0], [0] * threads, itertools.count()
    if use_dq:
        q = dq.Queue(os.path.join(d, "q"), codec="raw", sync=True)
        op, close = (lambda: q.enqueue(v)), q.close
    else:
        db = open_raw(d)
        op, close = (lambda: db.put(next(seq).to_bytes(8, "big"), v, sync=True)), db.close

    def worker(k: int) -> None:
        while time.perf_counter() < end:
            op()
            counts[k] += 1

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    end = t0 + ms / 1000
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    took = time.perf_counter() - t0
    close()
    return {"rate": sum(counts) / took}


def case_sync(cfg: dict) -> list[Row]:
    ms = int(cfg["sync_secs"] * 1000)
    res = measure({f"{k}{t}": (lambda d, n, t=t, k=k: sync_run(d, n, t, k == "dq"), ms)
                   for k in ("raw", "dq") for t in (1, 8)}, cfg["sync_rounds"])
    r = {name: v["rate"] for name, v in res.items()}
    scale = {k: [b / a for a, b in zip(r[f"{k}1"], r[f"{k}8"], strict=True)]
             for k in ("raw", "dq")}
    note = (f"{cfg['sync_secs']:g} s per run, {cfg['sync_rounds']} rounds; "
            "raw: db.put(sync=True) from 1 or 8 threads")
    return [
        Row("8 sync", "sync=True enqueue, 1 thread", "ops/s", r["dq1"], r["raw1"], note=note),
        Row("8 sync", "sync=True enqueue, 8 threads", "ops/s", r["dq8"], r["raw8"], note=note),
        Row("8 sync", "  8 threads / 1 thread", "x", scale["dq"], scale["raw"],
            target=">= 4x (figure)", ok=lambda row: row.median >= 4),
    ]


def peers(fast: int, slow: int) -> dict[str, tuple[Subject, int]]:
    found: dict[str, tuple[Subject, int]] = {}
    with contextlib.suppress(ImportError):
        import queuelib
        found["queuelib FifoDiskQueue"] = (api(queuelib.FifoDiskQueue, "push", "pop", "close"),
                                           fast)
    with contextlib.suppress(ImportError):
        import diskcache
        found["diskcache Deque"] = (
            api(lambda p: diskcache.Deque(directory=p), "append", "popleft"), fast)
    with contextlib.suppress(ImportError):
        import persistqueue
        found["persist-queue SQLiteQueue"] = (
            api(lambda p: persistqueue.SQLiteQueue(p, auto_commit=True), "put", "get"), slow)
        found["persist-queue Queue (file)"] = (api(lambda p: persistqueue.Queue(
            p, autosave=True, tempdir=os.path.dirname(p)), "put", "get"), slow)
    return found


def case_peers(cfg: dict) -> list[Row]:
    n = cfg["peer_n"]
    subjects = {"raw": (raw_fifo, n), "diskqueue": (dq_queue(), n),
                **peers(n, cfg["slow_n"])}
    res, rows = measure(subjects, cfg["peer_rounds"]), []
    for name, (_, count) in list(subjects.items())[1:]:
        for op, verb in (("enqueue", "put"), ("dequeue", "get")):
            ours = statistics.median(a / b for a, b in
                                     zip(res[name][op], res["diskqueue"][op], strict=True))
            rows.append(Row("9 peers", f"{name} {verb} ({count // 1000}k)", "ops/s",
                            res[name][op], res["raw"][op],
                            note=f"{ours:.2f}x diskqueue" if name != "diskqueue" else
                            f"{cfg['peer_rounds']} rounds; raw: db.put / db.get + db.delete"))
    return rows


CASES: dict[str, Callable[[dict], list[Row]]] = {
    "fifo": case_fifo,
    "batch": pair_case(
        "3 batch", "{op}_many(100) x{n:,} items", raw_batch, dq_batch, 0.6,
        ("items/s; raw: write_batch of 100 puts",
         "items/s; raw: iterate 100 + write_batch of 100 deletes")),
    "priority": pair_case(
        "4 priority", "PriorityQueue.{op} x{n:,}",
        raw_lanes(lambda k: [bytes([p]) for p in PRIOS[:k]], in_order=False),
        api(lambda p: dq.PriorityQueue(p, codec="raw"), "enqueue", "dequeue", "close",
            lambda k: PRIOS[:k]), 0.4, ("10 random levels; raw: put, key level + seq",
                                        "raw: get + delete in priority order")),
    "prefix": pair_case(
        "5 prefix", "PrefixQueue.{op} x{n:,}", raw_lanes(lambda k: PREFIX_SEQ[:k], in_order=True),
        api(lambda p: dq.PrefixQueue(p, codec="raw"), "enqueue", "dequeue", "close",
            lambda k: PREFIX_SEQ[:k], by_lane=True), 0.4,
        ("1,000 random prefixes; raw: put, key prefix + seq",
         "dequeue(prefix) in enqueue order; raw: get + delete")),
    "open": case_open, "disk": case_disk, "sync": case_sync, "peers": case_peers,
}


# -- output --------------------------------------------------------------------------------
def fmt(v: float, unit: str) -> str:
    if unit == "ops/s":
        return f"{v / 1000:,.1f}k/s" if v >= 1000 else f"{v:,.0f}/s"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    return f"{v:,.2f} MB" if unit == "MB" else f"{v:.2f}x"


def table(rows: list[Row], markdown: bool) -> str:
    head = ["case", "measure", "median", "p90", "raw plyvel", "vs raw", "target", "met", "note"]
    body = [[r.case, r.what, fmt(r.median, r.unit), fmt(r.p90, r.unit),
             fmt(statistics.median(r.raw), r.unit) if r.raw else "-",
             "-" if r.ratio is None else f"{r.ratio:.2f}x", r.target or "-",
             "-" if r.ok is None else ("yes" if r.ok(r) else "NO"), r.note] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(c.strip() for c in b) + " |" for b in body])
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = [head, ["-" * w for w in widths], *body]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
                     for cells in lines)


def header(cfg: dict, quick: bool, took: float) -> dict[str, str]:
    git = lambda *a: subprocess.run(["git", "-C", ROOT, *a], capture_output=True,  # noqa: E731
                                    text=True).stdout.strip()
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "diskqueue") else ""
    return {
        "python": platform.python_version(), "plyvel": plyvel.__version__,
        "leveldb": getattr(plyvel, "__leveldb_version__", "?"),
        "diskqueue": f"{dq.__version__} (commit {git('log', '-1', '--format=%h')}{dirty})",
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "mode": f"{'quick' if quick else 'full'}; seed {SEED}; 64-byte values; codec=raw "
                f"unless noted; {cfg['rounds']} rounds after a warm-up unless noted",
        "run": f"{time.strftime('%Y-%m-%d %H:%M')}, took {took:.0f} s",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    ap.add_argument("--only", help="comma-separated cases out of: " + ", ".join(CASES))
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(CASES)
    if unknown := [x for x in names if x not in CASES]:
        ap.error(f"unknown case {', '.join(unknown)}; pick from {', '.join(CASES)}")
    cfg, rows, started = QUICK if args.quick else FULL, [], time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        print(f"[{name}] running...", file=sys.stderr, flush=True)
        rows += CASES[name](cfg)
        print(f"[{name}] done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    for k, v in header(cfg, args.quick, time.perf_counter() - started).items():
        print(f"- {k}: {v}" if args.markdown else f"{k + ':':11s}{v}")
    print()
    print(table(rows, args.markdown))


if __name__ == "__main__":
    main()
