#!/usr/bin/env python
"""Chaos soak: many processes share directories while their holder keeps leaving.

    python benchmarks/chaos.py [--handovers 1000] [--workers 6] [--markdown]

Worker processes (6 by default) run a random mix of enqueue, enqueue_many, dequeue,
dequeue_many, pop, pop_many, blocking gets, and reserve then ack or nack, on three
directories: "line" (a Queue and a Stack on one directory: they share a format),
"prio" (a PriorityQueue) and "prefix" (a PrefixQueue). Every value is a unique token
(worker id and counter). Meanwhile a chaos loop picks a directory, reads its holder's
pid from ``diskqueue.pid``, and makes the holder leave, one way per round:

    close   the holder closes its handles and opens them again (SIGUSR1)
    kill    SIGKILL
    term    SIGTERM; the worker turns it into SystemExit, as many programs do
    stop    SIGSTOP for connect_timeout + 1.5 s, then SIGCONT
    fork    the holder forks a child that goes on using the queues, then is SIGKILLed
    disk    the holder's RLIMIT_FSIZE is cut to what it has written (SIGXFSZ ignored),
            so every write fails for a moment, then lifted

Each worker writes what it attempts before each call and what it got after, one line
per write on a pipe (a pipe because a file would hit the same RLIMIT_FSIZE; a line the
worker did not finish writing before it was killed was never acknowledged). At the end
every process is asked to stop, stragglers are killed and reported, what is left is
drained, and every token is accounted for:

    lost          an enqueue that returned, never delivered and not left at the end
    duplicated    delivered twice by dequeue/pop, or an acked item came back
    redelivered   a reservation handed out again: allowed when its reserver died or
                  its lease ran out, not allowed otherwise
    stall         the longest call, less the time it was asked to wait

The exit code is 0 when nothing was lost or duplicated, no redelivery was disallowed,
no call stalled beyond connect_timeout + 1 s and no process was left hanging; 1 when
the soak found a failure; 2 when it could not run.

examples:
  python benchmarks/chaos.py --handovers 100 --workers 4
  python benchmarks/chaos.py --seconds 300 --markdown
  python benchmarks/chaos.py --mix kill=1,stop=0 --json result.json --keep
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import functools
import inspect
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, TypedDict, TypeVar, Union, cast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import diskqueue as dq  # noqa: E402

try:
    import resource
except ImportError:  # not POSIX: no full-disk rounds
    resource = None  # type: ignore[assignment]

DIRS = ("line", "prio", "prefix")
KINDS = ("close", "kill", "term", "stop", "fork", "disk")
# Rounds of each kind, relatively. A stop round lasts connect_timeout + 1.5 s while the
# others take a fraction of a second, so stops are rarer to keep a run to minutes.
DEFAULT_MIX = "close=3,kill=3,term=2,fork=1.5,stop=0.4,disk=0.8"
PREFIXES = ("a", "b:", "c\x00d")
PRIORITIES = (-1, 0, 5)
WAIT = 0.2  # seconds a blocking get waits
FORK_LIFE = 1.5  # seconds a forked child works before it closes and exits
# (directory, op) -> weight; puts and takes balance so the queues stay short but not empty
OPS: dict[tuple[str, str], float] = {
    ("line", "enqueue"): 3, ("line", "enqueue_many"): 1, ("line", "push"): 1,
    ("line", "dequeue"): 1.5, ("line", "dequeue_many"): 0.6, ("line", "pop"): 1,
    ("line", "pop_many"): 0.3, ("line", "get"): 0.6, ("line", "dequeue_block"): 0.4,
    ("line", "reserve"): 1.5,
    ("prio", "enqueue"): 3, ("prio", "enqueue_many"): 1, ("prio", "dequeue"): 1.5,
    ("prio", "dequeue_many"): 0.6, ("prio", "dequeue_block"): 0.5, ("prio", "reserve"): 1.5,
    ("prefix", "enqueue"): 3, ("prefix", "enqueue_many"): 1, ("prefix", "dequeue"): 1.5,
    ("prefix", "dequeue_many"): 0.6, ("prefix", "dequeue_block"): 0.5,
    ("prefix", "reserve"): 1.5,
}
SIGNALS = {signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM}
TAKES = {"dequeue", "dequeue_many", "pop", "pop_many", "get", "dequeue_block"}


AnyHandle = Union[dq.Queue, dq.Stack, dq.PriorityQueue, dq.PrefixQueue]
Reliable = Union[dq.Queue, dq.PriorityQueue, dq.PrefixQueue]
T = TypeVar("T")


class Line(TypedDict, total=False):
    """One log line: an attempt (op, d, t0 and tok, n, wait or a), its end (t1, dt and
    got or err, msg), or an event (ev: hello, fork, bye)."""

    w: str
    i: int
    op: str
    d: str
    t0: float
    tok: list[str]
    n: int
    wait: float
    a: int
    t1: float
    dt: float
    got: Optional[list[list[Any]]]  # [token, key hex or None, attempts] as the worker saw
    err: str
    msg: str
    ev: str
    p: int
    child: int


def emit(record: dict[str, object]) -> None:
    """One log line in one write(2): a pipe never interleaves it with another's."""
    os.write(1, (json.dumps(record, separators=(",", ":")) + "\n").encode())


# ---------------------------------------------------------------------------- worker
class Worker:
    """One soak process: random calls on the three directories, each logged twice."""

    def __init__(self, wid: str, run_dir: str, connect_timeout: float, lease: float,
                 seed: int, life: Optional[float]) -> None:
        self.wid, self.run_dir, self.lease = wid, run_dir, lease
        self.connect_timeout = connect_timeout
        self.rng = random.Random(f"{seed}/{wid}")
        self.flags: set[str] = set()
        self.until = time.monotonic() + life if life else None
        self.n = 0  # op counter, also the token counter
        self.h = Handles()
        self.retry_at: dict[str, float] = {}  # handle name -> when to try opening again
        self.ops = list(OPS)
        self.weights = list(OPS.values())

    # Handlers only set flags: the loop acts at the next op boundary. SIGTERM is the
    # exception on purpose: it raises SystemExit in the middle of whatever call runs,
    # which is how a program that exits cleanly on SIGTERM leaves its queues.
    def install_signals(self) -> None:
        signal.signal(signal.SIGUSR1, lambda *_: self.flags.add("close"))
        signal.signal(signal.SIGUSR2, lambda *_: self.flags.add("fork"))
        signal.signal(signal.SIGINT, lambda *_: self.flags.add("stop"))
        signal.signal(signal.SIGTERM, _exit_on_term)
        if hasattr(signal, "SIGXFSZ"):  # a full disk must be an error, not a death
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)

    def done(self) -> bool:
        return "stop" in self.flags or (self.until is not None and time.monotonic() > self.until)

    def run(self) -> None:
        emit({"ev": "hello", "w": self.wid, "p": os.getpid(), "pp": os.getppid()})
        try:
            while not self.done():
                if "close" in self.flags:
                    self.reopen()
                elif "fork" in self.flags:
                    self.fork()
                elif self.open_missing():
                    self.one_op()
                else:
                    time.sleep(0.05)  # no directory can be opened right now
        finally:
            self.close_all()
            emit({"ev": "bye", "w": self.wid})

    def open_missing(self) -> bool:
        """Try once to open each handle not open yet (one that failed, no sooner than
        0.1 s later), so a directory that cannot be opened, a corrupted one say, stops
        only the calls on it. True when some directory is ready."""
        ct, h, now = self.connect_timeout, self.h, time.monotonic()
        line, prio, prefix = (os.path.join(self.run_dir, d) for d in DIRS)
        makers: dict[str, tuple[str, Callable[[], AnyHandle]]] = {
            "queue": ("line", lambda: dq.Queue(line, connect_timeout=ct)),
            "stack": ("line", lambda: dq.Stack(line, connect_timeout=ct)),
            "prio": ("prio", lambda: dq.PriorityQueue(prio, connect_timeout=ct)),
            "prefix": ("prefix", lambda: dq.PrefixQueue(prefix, connect_timeout=ct)),
        }
        for name, (d, make) in makers.items():
            if getattr(h, name) is None and now >= self.retry_at.get(name, 0):
                handle = self.call("open", d, make)
                setattr(h, name, handle)
                self.retry_at[name] = now + 0.1
        return any(h.ready(d) for d in DIRS)

    def close_all(self) -> None:
        for handle in self.h.opened():
            self.call("close", "all", handle.close)
        self.h = Handles()

    def reopen(self) -> None:
        self.flags.discard("close")
        self.close_all()
        time.sleep(self.rng.uniform(0, 0.1))  # so that another process may take over

    def fork(self) -> None:
        """Fork a child that keeps using the inherited handles; the parent goes on too
        (until the chaos loop kills it)."""
        self.flags.discard("fork")
        child_wid = f"{self.wid}.f{self.n}"
        pid = os.fork()
        if pid == 0:
            self.wid, self.n = child_wid, 0
            self.rng = random.Random(f"{self.rng.random()}/{child_wid}")
            self.until = time.monotonic() + FORK_LIFE
            emit({"ev": "hello", "w": self.wid, "p": os.getpid(), "pp": os.getppid()})
            return
        emit({"ev": "fork", "w": self.wid, "child": pid, "cw": child_wid})

    def token(self) -> str:
        self.n += 1
        return f"{self.wid}:{self.n}"

    def call(self, op: str, d: str, fn: Callable[[], T], **extra: object) -> Optional[T]:
        """Log the attempt, make the call, log what came back; None after an error."""
        self.n += 1
        i = self.n
        emit({"w": self.wid, "i": i, "op": op, "d": d, "t0": time.time(), **extra})
        started = time.monotonic()
        try:
            result = fn()
        except Exception as exc:  # every failure is data for the tally, not the end
            emit({"w": self.wid, "i": i, "t1": time.time(), "dt": time.monotonic() - started,
                  "err": type(exc).__name__, "msg": str(exc)[:160]})
            return None
        emit({"w": self.wid, "i": i, "t1": time.time(), "dt": time.monotonic() - started,
              "got": described(result)})
        return result

    def one_op(self) -> None:
        ready = [i for i, (d, _) in enumerate(self.ops) if self.h.ready(d)]
        d, op = self.ops[self.rng.choices(ready, [self.weights[i] for i in ready])[0]]
        if op in ("enqueue", "push", "enqueue_many"):
            toks = [self.token() for _ in range(self.rng.randint(2, 6) if "many" in op else 1)]
            self.call(op, d, self.putter(d, op, toks), tok=toks)
        elif op == "reserve":
            self.reserve(d)
        else:
            n = self.rng.randint(2, 6) if op.endswith("many") else 1
            wait = WAIT if op in ("get", "dequeue_block") else 0
            self.call(op, d, self.taker(d, op, n), n=n, wait=wait)

    def putter(self, d: str, op: str, toks: list[str]) -> Callable[[], object]:
        rng = self.rng
        if d == "line":
            q, s = self.h.line()
            return {"enqueue": lambda: q.enqueue(toks[0]),
                    "push": lambda: s.push(toks[0]),
                    "enqueue_many": lambda: q.enqueue_many(toks)}[op]
        if d == "prio":
            pq, p = self.h.pq(), rng.choice(PRIORITIES)
            if op == "enqueue":
                return lambda: pq.enqueue(p, toks[0])
            pairs = [(rng.choice(PRIORITIES), t) for t in toks]
            return lambda: pq.enqueue_many(pairs)
        px, prefix = self.h.px(), rng.choice(PREFIXES)
        if op == "enqueue":
            return lambda: px.enqueue(prefix, toks[0])
        return lambda: px.enqueue_many(prefix, toks)

    def taker(self, d: str, op: str, n: int) -> Callable[[], object]:
        block = op in ("get", "dequeue_block")
        wait = WAIT if block else None
        if d == "line":
            q, s = self.h.line()
            return {"dequeue": lambda: q.dequeue(),
                    "dequeue_many": lambda: q.dequeue_many(n),
                    "pop": lambda: s.pop(),
                    "pop_many": lambda: s.pop_many(n),
                    "get": lambda: q.get(timeout=WAIT),
                    "dequeue_block": lambda: q.dequeue(block=True, timeout=WAIT)}[op]
        if d == "prio":
            pq = self.h.pq()
            if op == "dequeue_many":
                return lambda: pq.dequeue_many(n)
            return lambda: pq.dequeue(block=block, timeout=wait)
        px, prefix = self.h.px(), self.rng.choice(PREFIXES)
        if op == "dequeue_many":
            return lambda: px.dequeue_many(prefix, n)
        return lambda: px.dequeue(prefix, block=block, timeout=wait)

    def reserve(self, d: str) -> None:
        """Reserve, "work" a moment, then ack (mostly) or nack, within one op: so a
        graceful close never leaves a reservation of ours behind."""
        handle: Reliable
        reserve: Callable[[], dq.Item]
        if d == "prefix":
            px, prefix = self.h.px(), self.rng.choice(PREFIXES)
            handle, reserve = px, lambda: px.reserve(prefix, lease=self.lease)
        else:
            q = self.h.line()[0] if d == "line" else self.h.pq()
            handle, reserve = q, lambda: q.reserve(lease=self.lease)
        item = self.call("reserve", d, reserve)
        if item is None:
            return
        time.sleep(self.rng.uniform(0, 0.01))
        if self.rng.random() < 0.8:
            self.call("ack", d, lambda: handle.ack(item), tok=[item.value], a=item.attempts)
        else:
            front = self.rng.random() < 0.5
            self.call("nack", d, lambda: handle.nack(item, front=front), tok=[item.value],
                      a=item.attempts)


@dataclass
class Handles:
    """A worker's four handles on the three directories; None until opened."""

    queue: Optional[dq.Queue] = None
    stack: Optional[dq.Stack] = None
    prio: Optional[dq.PriorityQueue] = None
    prefix: Optional[dq.PrefixQueue] = None

    def ready(self, d: str) -> bool:
        if d == "line":
            return self.queue is not None and self.stack is not None
        return getattr(self, d) is not None

    # The ops of a directory run only once it is ready(), so these never raise.
    def line(self) -> tuple[dq.Queue, dq.Stack]:
        if self.queue is None or self.stack is None:
            raise dq.Closed("line is not open")
        return self.queue, self.stack

    def pq(self) -> dq.PriorityQueue:
        if self.prio is None:
            raise dq.Closed("prio is not open")
        return self.prio

    def px(self) -> dq.PrefixQueue:
        if self.prefix is None:
            raise dq.Closed("prefix is not open")
        return self.prefix

    def opened(self) -> list[AnyHandle]:
        return [h for h in (self.queue, self.stack, self.prio, self.prefix) if h is not None]


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def described(result: object) -> object:
    """What a call returned, as [token, key hex, attempts] rows (key None for get)."""
    if isinstance(result, dq.Item):
        return [[result.value, result.key.hex(), result.attempts]]
    if isinstance(result, list):
        return [[i.value, i.key.hex(), i.attempts] for i in result]
    if isinstance(result, str):  # get() hands back the bare value
        return [[result, None, 0]]
    return None


# ---------------------------------------------------------------------------- fleet
@dataclass
class Proc:
    """A worker process, or a child one forked, as the runner knows it."""

    wid: str
    pid: int
    forked: bool = False
    status: Optional[int] = None  # waitpid status once reaped
    doomed_at: Optional[float] = None  # time.time() a fatal signal was sent
    deadline: Optional[float] = None  # monotonic time by which it must have exited
    hung: str = ""  # why it was killed as hanging


class Fleet:
    """Spawns the workers, reads their pipes into log files, reaps every process."""

    def __init__(self, cfg: Config, run_dir: str) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        self.logs = os.path.join(run_dir, "logs")
        os.makedirs(self.logs)
        self.procs: dict[int, Proc] = {}
        self.reaped: dict[int, int] = {}
        self.forks: dict[int, int] = {}  # parent pid -> child pid
        self.lock = threading.Lock()
        self.readers: list[threading.Thread] = []
        self.spawned = 0
        _become_subreaper()

    def spawn(self) -> None:
        self.spawned += 1
        wid = f"w{self.spawned}"
        argv = [sys.executable, os.path.abspath(__file__), "--worker", wid,
                "--run-dir", self.run_dir, "--connect-timeout", str(self.cfg.connect_timeout),
                "--lease", str(self.cfg.lease), "--seed", str(self.cfg.seed)]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        r, w = os.pipe()
        # The worker starts with our signals blocked and unblocks them once its handlers
        # are in place: a stop sent while it still imports then waits instead of killing.
        pid = os.posix_spawn(sys.executable, argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)], setsigmask=SIGNALS)
        os.close(w)
        with self.lock:
            self.procs[pid] = Proc(wid, pid)
        reader = threading.Thread(target=self._read, args=(r, wid), daemon=True)
        reader.start()
        self.readers.append(reader)

    def _read(self, fd: int, wid: str) -> None:
        """Copy a pipe to its log file and note hellos and forks as they come."""
        with open(os.path.join(self.logs, f"{wid}.log"), "wb") as out, \
                os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                out.write(line)
                if b'"ev"' in line[:8]:
                    self._note(cast(Line, json.loads(line)))

    def _note(self, ev: Line) -> None:
        with self.lock:
            if ev["ev"] == "hello" and ev["p"] not in self.procs:
                pid = int(ev["p"])
                self.procs[pid] = Proc(str(ev["w"]), pid, forked=True,
                                       deadline=time.monotonic() + FORK_LIFE + self.grace)
            elif ev["ev"] == "fork":
                parent = next(p for p in self.procs.values() if p.wid == ev["w"])
                self.forks[parent.pid] = int(ev["child"])

    @property
    def grace(self) -> float:
        """How long a process may take to exit once told to: a call may wait out
        connect_timeout, then closing may too."""
        return 2 * self.cfg.connect_timeout + 5

    def alive(self, pid: int) -> bool:
        """Running, and not already sent a fatal signal."""
        with self.lock:
            proc = self.procs.get(pid)
            return proc is not None and proc.status is None and proc.doomed_at is None

    def reap(self) -> None:
        """Collect every exited process (forked grandchildren too: we are their
        subreaper) and keep N main workers running."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            with self.lock:
                if pid in self.procs:
                    self.procs[pid].status = status
                else:
                    self.reaped[pid] = status
        with self.lock:
            for pid, status in list(self.reaped.items()):
                if pid in self.procs:
                    self.procs[pid].status = status
                    del self.reaped[pid]
            main = sum(1 for p in self.procs.values() if not p.forked and p.status is None)
        for _ in range(self.cfg.workers - main):
            self.spawn()
        self.kill_overdue()

    def doom(self, pid: int, sig: int) -> None:
        with self.lock:
            proc = self.procs[pid]
            proc.doomed_at = proc.doomed_at or time.time()
            proc.deadline = min(proc.deadline or 1e18, time.monotonic() + self.grace)
        _signal(pid, sig)

    def kill_overdue(self) -> None:
        """A process past its deadline is hanging: kill it and say so."""
        now = time.monotonic()
        with self.lock:
            overdue = [p for p in self.procs.values()
                       if p.status is None and p.deadline is not None and now > p.deadline]
            for proc in overdue:
                proc.hung = "did not exit in time (forked child)" if proc.forked \
                    else "did not exit in time"
                proc.doomed_at = proc.doomed_at or time.time()
        for proc in overdue:
            _signal(proc.pid, signal.SIGCONT)
            _signal(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        """Ask every live process to finish; kill those that do not within the grace."""
        with self.lock:
            live = [p for p in self.procs.values() if p.status is None]
            for proc in live:
                proc.deadline = min(proc.deadline or 1e18, time.monotonic() + self.grace)
        for proc in live:
            _signal(proc.pid, signal.SIGCONT)
            _signal(proc.pid, signal.SIGINT)
        end = time.monotonic() + self.grace + 2
        while time.monotonic() < end:
            self.cfg_workers_off()
            self.reap()
            with self.lock:
                if all(p.status is not None for p in self.procs.values()):
                    break
            time.sleep(0.05)
        for reader in self.readers:
            reader.join(timeout=self.grace)

    def cfg_workers_off(self) -> None:
        """At the end, reaping must not spawn replacements."""
        self.cfg = dataclasses.replace(self.cfg, workers=0)


def _become_subreaper() -> None:
    """Orphaned forked children become ours to reap (Linux); elsewhere init reaps them."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------- chaos
@dataclass
class Round:
    """One hit on a directory's holder, and what followed."""

    kind: str
    d: str
    pid: int
    at: float  # time.time() the holder was hit
    started: float = field(default_factory=time.monotonic)
    watching: bool = False  # waiting to see another holder take the directory
    done: bool = False
    gone: bool = False  # the old holder was seen to let go
    forked: Optional[bool] = None  # fork rounds: the child was seen before the kill
    takeover: Optional[float] = None  # seconds until another holder was seen


def holder_of(path: str) -> Optional[int]:
    try:
        with open(os.path.join(path, "diskqueue.pid")) as fh:
            return int(fh.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def lock_holder(path: str) -> Optional[int]:
    """The pid holding the directory's LevelDB ``LOCK`` (an fcntl lock), read from
    /proc/locks; None when nobody holds it or the system has no /proc/locks."""
    try:
        st = os.stat(os.path.join(path, "LOCK"))
        ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks") as fh:
            for line in fh:
                fields = line.split()  # "1: POSIX  ADVISORY  WRITE 4242 08:01:131 0 EOF"
                if len(fields) > 5 and fields[1] == "POSIX" and fields[5] == ident:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None


class Chaos:
    """Picks a directory and a way for its holder to leave, round after round.

    Rounds overlap: while one directory's new holder takes over, or its old holder
    sits stopped or starved of disk, another directory is hit. A process or a
    directory in a round that is not over is left alone, so one leave is one round.
    """

    def __init__(self, cfg: Config, fleet: Fleet, run_dir: str) -> None:
        self.cfg, self.fleet, self.run_dir = cfg, fleet, run_dir
        self.rng = random.Random(cfg.seed)
        self.kinds, self.weights = zip(*cfg.mix.items(), strict=True)
        self.rounds: list[Round] = []
        self.active: list[Round] = []
        self.todo: list[tuple[float, Callable[[], None]]] = []  # (monotonic due, action)
        self.skipped = 0  # turns with no live holder of ours to hit
        self.stuck = ""  # why the rounds ended early
        self.pid_file_missed = 0  # rounds whose holder the pid file did not name
        self.unnamed: dict[str, tuple[int, float]] = {}  # dir -> (lock holder, since)
        self.missed_examples: list[str] = []

    def run(self) -> None:
        end = time.monotonic() + self.cfg.seconds
        last = time.monotonic()
        # No holder anywhere for this long means the directories cannot be opened any
        # more (a corrupted one, say): more rounds would only wait.
        patience = 2 * self.cfg.connect_timeout + 10
        i = 0
        while len(self.rounds) < self.cfg.handovers and time.monotonic() < end:
            self.fleet.reap()
            self.tick()
            found = self.pick(i)
            if found is None:
                if time.monotonic() - last > patience:
                    self.stuck = f"no live holder of ours for {patience:g} s (" + ", ".join(
                        f"{d}: pid file {holder_of(os.path.join(self.run_dir, d))}"
                        for d in DIRS) + ")"
                    break
                time.sleep(0.01)
                continue
            d, pid = found
            i = DIRS.index(d) + 1  # directories take turns
            last = time.monotonic()
            self.hit(self.rng.choices(self.kinds, self.weights)[0], d, pid)
            time.sleep(self.rng.uniform(0, 0.05))
        self.finish()

    def finish(self) -> None:
        """Run what is scheduled now (SIGCONT, lifting limits) and let takeovers show."""
        for _, action in sorted(self.todo, key=lambda x: x[0]):
            action()
        self.todo.clear()
        end = time.monotonic() + self.cfg.connect_timeout + 3
        while self.active and time.monotonic() < end:
            self.fleet.reap()
            self.tick()
            time.sleep(0.01)

    def later(self, delay: float, action: Callable[[], None]) -> None:
        self.todo.append((time.monotonic() + delay, action))

    def tick(self) -> None:
        now = time.monotonic()
        due = [a for a in self.todo if a[0] <= now]
        self.todo = [a for a in self.todo if a[0] > now]
        for _, action in due:
            action()
        for rnd in self.active:
            if rnd.watching:
                self.watch(rnd)
        self.active = [r for r in self.active if not r.done]

    def pick(self, start: int) -> Optional[tuple[str, int]]:
        """The next directory, from ``start`` on, held by a live process of ours, with
        neither in a round that is not over."""
        busy_dirs = {r.d for r in self.active}
        busy_pids = {r.pid for r in self.active}
        for k in range(len(DIRS)):
            d = DIRS[(start + k) % len(DIRS)]
            if d in busy_dirs:
                continue
            pid = self.holder(d)
            if pid is not None and pid not in busy_pids:
                return d, pid
        self.skipped += 1
        return None

    def holder(self, d: str) -> Optional[int]:
        """The holder named by the pid file. When that names nobody alive while a
        process of ours holds LevelDB's lock, and still does half a second later (a new
        holder writes the file just after it locks), the file is wrong: say so, and
        hit the process that holds the lock."""
        path = os.path.join(self.run_dir, d)
        pid = holder_of(path)
        if pid is not None and self.fleet.alive(pid):
            self.unnamed.pop(d, None)
            return pid
        locker = lock_holder(path)
        if locker is None or not self.fleet.alive(locker):
            self.unnamed.pop(d, None)
            return None
        seen, since = self.unnamed.setdefault(d, (locker, time.monotonic()))
        if seen != locker:
            self.unnamed[d] = (locker, time.monotonic())
            return None
        if time.monotonic() - since < 0.5:
            return None
        del self.unnamed[d]
        self.pid_file_missed += 1
        if len(self.missed_examples) < 5:
            self.missed_examples.append(f"{d}: pid file names {pid}, LOCK held by {locker}")
        return locker

    def hit(self, kind: str, d: str, pid: int) -> None:
        rnd = Round(kind, d, pid, time.time())
        self.rounds.append(rnd)
        self.active.append(rnd)
        if kind in ("close", "kill", "term"):
            sig = {"close": signal.SIGUSR1, "kill": signal.SIGKILL, "term": signal.SIGTERM}
            if kind == "close":
                _signal(pid, sig[kind])
            else:
                self.fleet.doom(pid, sig[kind])
            rnd.watching = True
        elif kind == "stop":
            _signal(pid, signal.SIGSTOP)
            self.later(self.cfg.connect_timeout + 1.5, lambda: self.resume(rnd))
        elif kind == "fork":
            _signal(pid, signal.SIGUSR2)
            # The worker forks at its next op boundary, a few ms away unless it is stuck
            self.later(self.rng.uniform(0.1, 0.4), lambda: self.kill_parent(rnd))
        elif kind == "disk":
            self.starve(rnd)

    def resume(self, rnd: Round) -> None:
        _signal(rnd.pid, signal.SIGCONT)
        rnd.done = True

    def kill_parent(self, rnd: Round) -> None:
        rnd.forked = rnd.pid in self.fleet.forks
        self.fleet.doom(rnd.pid, signal.SIGKILL)
        rnd.started, rnd.watching = time.monotonic(), True

    def starve(self, rnd: Round) -> None:
        """Every write of the holder that would grow a file fails for a moment."""
        if resource is None or not hasattr(resource, "prlimit"):
            rnd.done = True
            return
        path = os.path.join(self.run_dir, rnd.d)
        logs = [os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
                if n.endswith(".log")]
        try:
            old = resource.prlimit(rnd.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(rnd.pid, resource.RLIMIT_FSIZE, (max(logs, default=0), old[1]))
        except (ProcessLookupError, PermissionError):
            rnd.done = True
            return

        def lift() -> None:
            try:
                resource.prlimit(rnd.pid, resource.RLIMIT_FSIZE, old)
            except (ProcessLookupError, PermissionError):
                pass
            rnd.done = True

        self.later(self.rng.uniform(0.2, 0.6), lift)

    def watch(self, rnd: Round) -> None:
        """Has another live holder taken the directory? (A closing holder may get it
        back: then the pid file went away and came back with its pid.)"""
        pid = holder_of(os.path.join(self.run_dir, rnd.d))
        if pid is None or not self.fleet.alive(pid):
            rnd.gone = True
        elif pid != rnd.pid or rnd.gone:
            rnd.takeover, rnd.done = time.monotonic() - rnd.started, True
            return
        if time.monotonic() - rnd.started > self.cfg.connect_timeout + 3:
            rnd.done = True


# ---------------------------------------------------------------------------- drain
def drain(run_dir: str, connect_timeout: float) -> tuple[list[list[object]], dict[str, str]]:
    """Everything left in the three directories as [token, key hex, None] rows, and a
    note per directory that could not be opened as it was."""
    rows: list[list[object]] = []
    notes: dict[str, str] = {}
    for d in DIRS:
        path = os.path.join(run_dir, d)
        try:
            rows += _drain_one(d, path, connect_timeout)
        except dq.DiskQueueError as exc:
            notes[d] = f"{type(exc).__name__}: {str(exc)[:200]}"
            subprocess.run([sys.executable, "-m", "diskqueue", "repair", path],
                           capture_output=True, cwd=ROOT, check=False)
            try:
                rows += _drain_one(d, path, connect_timeout)
                notes[d] += "; drained after `diskq repair`"
            except dq.DiskQueueError as again:
                notes[d] += f"; after repair: {type(again).__name__}: {str(again)[:200]}"
    return rows, notes


def _drain_one(d: str, path: str, connect_timeout: float) -> list[list[object]]:
    if d == "prefix":
        with dq.PrefixQueue(path, connect_timeout=connect_timeout) as px:
            rows: list[list[object]] = []
            for prefix in px.prefixes():
                rows += _take_all(functools.partial(px.dequeue_many, prefix, 256))
            return rows
    q: Union[dq.Queue, dq.PriorityQueue]
    q = dq.Queue(path, connect_timeout=connect_timeout) if d == "line" else \
        dq.PriorityQueue(path, connect_timeout=connect_timeout)
    with q:
        return _take_all(lambda: q.dequeue_many(256))


def _take_all(take: Callable[[], list[dq.Item]]) -> list[list[object]]:
    rows: list[list[object]] = []
    while True:
        try:
            rows += [[i.value, i.key.hex(), None] for i in take()]
        except dq.Empty:
            return rows


# ---------------------------------------------------------------------------- tally
@dataclass
class Delivery:
    """One time a token came out: by a take, a reservation, or the final drain."""

    t: float  # time.time() the call returned (the drain: the end of the run)
    how: str  # "take" | "reserve" | "left"
    w: str
    key: Optional[str]
    attempts: int
    t0: float = 0.0  # a reservation's call start: its lease ends no sooner than t0 + lease


@dataclass
class Tally:
    """What a run did and what it found; rendered as the table, dumped as JSON."""

    seconds: float = 0.0
    rounds: Counter[str] = field(default_factory=Counter)
    takeovers: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    no_takeover: Counter[str] = field(default_factory=Counter)
    skipped_rounds: int = 0
    stuck: str = ""
    pid_file_missed: int = 0
    forked: int = 0  # fork rounds whose child was seen before the parent was killed
    ops: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    acked: int = 0  # enqueued tokens whose call returned
    maybe: int = 0  # enqueued tokens whose call failed or never returned
    delivered: int = 0
    left: int = 0
    lost: int = 0
    lost_excused: int = 0  # missing, but a process died inside a take on that directory
    duplicated: Counter[str] = field(default_factory=Counter)
    redelivered_allowed: Counter[str] = field(default_factory=Counter)
    redelivered_disallowed: int = 0
    phantom: int = 0  # came out, but nobody ever tried to put it in
    stall: float = 0.0
    stall_call: str = ""
    stalls_over: int = 0  # calls that stalled beyond connect_timeout + 1 s
    hanging: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    noise: int = 0  # lines that were not log records: tracebacks, warnings
    drain_notes: dict[str, str] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def handovers(self) -> int:
        return sum(self.rounds.values())

    def example(self, kind: str, text: str) -> None:
        if len(self.examples[kind]) < 5:
            self.examples[kind].append(text)

    def failed(self, bound: float) -> bool:
        return bool(self.lost or sum(self.duplicated.values()) or self.redelivered_disallowed
                    or self.phantom or self.stuck or self.drain_notes or self.stall > bound
                    or self.hanging or self.crashed)


class Accounting:
    """Reads every log line of a run and settles each token's story."""

    def __init__(self, cfg: Config, tally: Tally) -> None:
        self.cfg, self.t = cfg, tally
        self.bound = cfg.connect_timeout + 1
        self.open: dict[tuple[str, int], Line] = {}
        self.acked: dict[str, str] = {}  # token -> directory
        self.tried: set[str] = set()
        self.deliveries: dict[str, list[Delivery]] = defaultdict(list)
        self.settled: dict[tuple[str, str, int], tuple[str, str]] = {}
        self.stalls: list[tuple[float, str]] = []

    def read(self, logs: str) -> None:
        for name in sorted(os.listdir(logs)):
            with open(os.path.join(logs, name), "rb") as fh:
                for raw in fh:
                    self.line(raw)

    def line(self, raw: bytes) -> None:
        try:
            rec = cast(Line, json.loads(raw))
        except ValueError:
            self.t.noise += 1
            self.t.example("noise", raw.decode(errors="replace").rstrip()[:200])
            return
        if not isinstance(rec, dict) or "ev" in rec:
            return
        key = (rec["w"], rec["i"])
        if "op" in rec:
            self.open[key] = rec
            if "tok" in rec and rec["op"] not in ("ack", "nack"):
                self.tried.update(rec["tok"])
            return
        self.done(self.open.pop(key), rec)

    def done(self, call: Line, end: Line) -> None:
        op, d, w = str(call["op"]), str(call["d"]), str(call["w"])
        outcome = "ok" if "got" in end else str(end["err"])
        self.t.ops[f"{d}.{op}"][outcome] += 1
        self.stalled(call, float(end["dt"]), "")
        if outcome != "ok":
            if op in ("ack", "nack"):
                self.settled[(w, call["tok"][0], call["a"])] = (op, outcome)
            if outcome not in ("Empty", "NotReserved"):
                self.t.example(f"error {outcome}", f"{w} {d}.{op}: {end.get('msg')}")
            return
        if "tok" in call and op not in ("ack", "nack"):
            for tok in call["tok"]:
                self.acked[tok] = d
        elif op in ("ack", "nack"):
            self.settled[(w, call["tok"][0], call["a"])] = (op, "ok")
        elif op in TAKES or op == "reserve":
            how = "reserve" if op == "reserve" else "take"
            for tok, k, attempts in end["got"] or []:
                self.deliveries[tok].append(Delivery(float(end["t1"]), how, w, k,
                                                     attempts, float(call["t0"])))

    def stalled(self, call: Line, dt: float, note: str) -> None:
        stall = dt - float(call.get("wait") or 0)
        if stall > self.bound:
            self.t.stalls_over += 1
            self.stalls.append((stall, f"{call['w']} {call['d']}.{call['op']} {stall:.1f} s"
                                       f" from {float(call['t0']):.3f}{note}"))
        if stall > self.t.stall:
            self.t.stall, self.t.stall_call = stall, f"{call['d']}.{call['op']}{note}"

    def settle(self, deaths: dict[str, float], left: list[list[object]], end: float) -> None:
        """Unfinished calls, then each token's deliveries in order."""
        excuse: Counter[str] = Counter()
        for (w, _), call in self.open.items():
            died = deaths.get(w)
            if died is not None:
                self.stalled(call, died - float(call["t0"]), " (never returned)")
                if call["op"] in TAKES:
                    excuse[str(call["d"])] += int(call.get("n") or 1)
            if "tok" in call and call["op"] not in ("ack", "nack"):
                self.t.maybe += len(call["tok"])
        for _, text in sorted(self.stalls, reverse=True)[:5]:
            self.t.example("stall", text)
        for tok, _k, _ in left:
            self.deliveries[str(tok)].append(Delivery(end, "left", "-", str(_k), 0))
        self.t.left = len(left)
        self.t.acked = len(self.acked)
        self.t.delivered = sum(len(v) for v in self.deliveries.values()) - len(left)
        missing: Counter[str] = Counter(d for tok, d in self.acked.items()
                                        if tok not in self.deliveries)
        for tok, d in self.acked.items():
            if tok not in self.deliveries and len(self.t.examples["lost"]) < 5:
                self.t.example("lost", f"{tok} ({d})")
        for d, n in missing.items():
            self.t.lost_excused += min(n, excuse[d])
            self.t.lost += max(0, n - excuse[d])
        for tok, seen in self.deliveries.items():
            if tok not in self.tried:
                self.t.phantom += 1
                self.t.example("phantom", repr(tok)[:80])
            seen.sort(key=lambda x: x.t)
            for before, after in zip(seen, seen[1:], strict=False):
                self.pair(tok, before, after, deaths)

    def pair(self, tok: str, a: Delivery, b: Delivery, deaths: dict[str, float]) -> None:
        """Judge one token coming out again after it came out before."""
        text = (f"{tok} ({self.acked.get(tok, '?')}): {a.how} by {a.w} at {a.t:.3f}, "
                f"then {b.how} by {b.w} at {b.t:.3f}")
        if a.how == "reserve":
            how, outcome = self.settled.get((a.w, tok, a.attempts), ("", ""))
            if how == "nack":
                return  # given back on purpose
            if how == "ack" and outcome == "ok":
                self.dup("acked item came back", text)
                return
            if a.key and b.key and a.key != b.key:
                self.dup("stored twice", text)
                return
            died = deaths.get(a.w)
            if died is not None and died <= b.t:
                self.t.redelivered_allowed["reserver died"] += 1
            elif b.t >= a.t0 + self.cfg.lease:
                self.t.redelivered_allowed["lease ran out"] += 1
            elif b.how == "left":
                self.t.redelivered_allowed["reserver gone at the end"] += 1
            else:
                self.t.redelivered_disallowed += 1
                self.t.example("redelivered, not allowed", text)
            return
        if a.key and b.key and a.key != b.key:
            self.dup("stored twice", text)
        else:
            self.dup("dequeued item came back", text)

    def dup(self, why: str, text: str) -> None:
        self.t.duplicated[why] += 1
        self.t.example(f"duplicated: {why}", text)


# ---------------------------------------------------------------------------- report
def rows(t: Tally, cfg: Config) -> list[tuple[str, str]]:
    """The table: one (what, figure) row each."""
    out = [("run", f"{t.seconds:.0f} s, {cfg.workers} workers, connect_timeout "
                   f"{cfg.connect_timeout:g} s, lease {cfg.lease:g} s, seed {cfg.seed}")]
    out.append(("holder rounds", f"{t.handovers} (" + ", ".join(
        f"{k} {t.rounds[k]}" for k in KINDS if t.rounds[k]) + ")"))
    if t.stuck:
        out.append(("rounds ended early", t.stuck))
    if t.pid_file_missed:
        out.append(("  holder not named by diskqueue.pid", f"{t.pid_file_missed} rounds"))
    for kind in ("close", "kill", "term", "fork"):
        times = sorted(t.takeovers[kind])
        if t.rounds[kind]:
            med = f"median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s" if times else ""
            out.append((f"  {kind}: new holder seen",
                        f"{len(times)}/{t.rounds[kind]} {med}".rstrip()))
    if t.rounds["fork"]:
        out.append(("  fork: child forked before the kill", f"{t.forked}/{t.rounds['fork']}"))
    total = sum(sum(c.values()) for c in t.ops.values())
    errors: Counter[str] = Counter()
    for c in t.ops.values():
        errors.update({k: v for k, v in c.items() if k != "ok"})
    counts = [("ok", total - sum(errors.values()))] + errors.most_common()
    out.append(("calls", f"{total} (" + ", ".join(f"{k} {v}" for k, v in counts) + ")"))
    for name in sorted(t.ops):
        c = t.ops[name]
        out.append((f"  {name}", ", ".join(f"{k} {v}" for k, v in c.most_common())))
    out += [
        ("tokens enqueued (returned / maybe)", f"{t.acked} / {t.maybe}"),
        ("delivered / left at the end", f"{t.delivered} / {t.left}"),
        ("lost", f"{t.lost}" + (f" (+{t.lost_excused} taken by a process that died "
                                "mid-call, allowed)" if t.lost_excused else "")),
        ("duplicated", _counts(t.duplicated)),
        ("redelivered, allowed", _counts(t.redelivered_allowed)),
        ("redelivered, not allowed", str(t.redelivered_disallowed)),
        ("never enqueued but delivered", str(t.phantom)),
        ("longest stall", f"{t.stall:.2f} s ({t.stall_call}); {t.stalls_over} calls over "
                          f"{cfg.connect_timeout + 1:g} s"),
        ("processes left hanging", str(len(t.hanging))),
        ("processes crashed", str(len(t.crashed))),
        ("stray output lines", str(t.noise)),
    ]
    out += [(f"drain of {d}", note) for d, note in t.drain_notes.items()]
    return out


def _counts(c: Counter[str]) -> str:
    total = sum(c.values())
    return f"{total}" + (" (" + ", ".join(f"{k} {v}" for k, v in c.most_common()) + ")"
                         if total else "")


def render(t: Tally, cfg: Config, markdown: bool) -> str:
    table = rows(t, cfg)
    if markdown:
        lines = ["| what | figure |", "|---|---|"]
        lines += [f"| {a.strip() if not a.startswith('  ') else '&nbsp;&nbsp;' + a.strip()} "
                  f"| {b} |" for a, b in table]
    else:
        width = max(len(a) for a, _ in table)
        lines = [f"{a:<{width}}  {b}" for a, b in table]
    for kind, texts in t.examples.items():
        if kind != "noise" or t.noise:
            lines.append(f"\n{kind}, e.g.:" if not markdown else f"\n**{kind}**, e.g.:\n")
            lines += [("- " if markdown else "  ") + text for text in texts]
    lines += [f"\nhanging: {h}" for h in t.hanging] + [f"\ncrashed: {c}" for c in t.crashed]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
@dataclass(frozen=True)
class Config:
    workers: int = 6
    handovers: int = 1000
    seconds: float = 600.0
    connect_timeout: float = 2.0
    lease: float = 5.0
    seed: int = 1
    mix: dict[str, float] = field(default_factory=dict)


def parse_mix(text: str) -> dict[str, float]:
    mix = {k: 0.0 for k in KINDS}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in mix:
            raise argparse.ArgumentTypeError(f"unknown kind {name!r}; kinds: {', '.join(KINDS)}")
        mix[name.strip()] = float(weight)
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("the mix needs one kind with a weight above 0")
    return {k: w for k, w in mix.items() if w > 0}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=6, help="worker processes (default 6)")
    ap.add_argument("--handovers", type=int, default=1000,
                    help="holder rounds to run (default 1000)")
    ap.add_argument("--seconds", type=float, default=600,
                    help="stop the rounds after this long even if fewer ran (default 600)")
    ap.add_argument("--connect-timeout", type=float, default=2.0,
                    help="connect_timeout= of every handle, in seconds (default 2)")
    ap.add_argument("--lease", type=float, default=5.0,
                    help="lease of each reservation, in seconds (default 5)")
    ap.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX),
                    help=f"relative weight of each kind of round (default {DEFAULT_MIX})")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--dir", help="parent of the run directory (default: the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the directories and logs")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    for hidden in ("--worker", "--run-dir"):  # how the soak starts its own workers
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    return ap


def unsupported() -> Optional[str]:
    """Why this diskqueue cannot be soaked, or None. The bound on stalls is the
    constructors' connect_timeout= (SPEC §6): without it there is nothing to measure
    calls against."""
    for cls in (dq.Queue, dq.Stack, dq.PriorityQueue, dq.PrefixQueue):
        if "connect_timeout" not in inspect.signature(cls).parameters:
            return (f"this diskqueue's {cls.__name__}() has no connect_timeout= keyword "
                    "(SPEC §6); the soak bounds every call by it. Use a diskqueue that has it.")
    return None


def soak(cfg: Config, base: Optional[str], keep: bool) -> tuple[Tally, str]:
    run_dir = tempfile.mkdtemp(prefix="diskqueue-chaos-", dir=base)
    for d in DIRS:
        os.mkdir(os.path.join(run_dir, d), 0o700)
    tally = Tally()
    fleet = Fleet(cfg, run_dir)
    chaos = Chaos(cfg, fleet, run_dir)
    started = time.monotonic()
    try:
        fleet.reap()  # starts the workers
        chaos.run()
    finally:
        fleet.stop_all()
    tally.seconds = time.monotonic() - started
    for rnd in chaos.rounds:
        tally.rounds[rnd.kind] += 1
        if rnd.forked is not None:
            tally.forked += rnd.forked
        if rnd.takeover is not None:
            tally.takeovers[rnd.kind].append(rnd.takeover)
        elif rnd.kind not in ("stop", "disk"):
            tally.no_takeover[rnd.kind] += 1
    tally.skipped_rounds, tally.stuck = chaos.skipped, chaos.stuck
    tally.pid_file_missed = chaos.pid_file_missed
    for text in chaos.missed_examples:
        tally.example("holder not named by diskqueue.pid", text)
    left, tally.drain_notes = drain(run_dir, cfg.connect_timeout)
    account = Accounting(cfg, tally)
    account.read(fleet.logs)
    account.settle(_fates(fleet, tally), left, time.time())
    if not keep:
        subprocess.run(["rm", "-rf", run_dir], check=False)
    return tally, run_dir


def _fates(fleet: Fleet, tally: Tally) -> dict[str, float]:
    """When each process that did not end by itself was hit (worker id -> time), and
    note the ones that hung or crashed."""
    deaths: dict[str, float] = {}
    for proc in fleet.procs.values():
        if proc.hung:
            tally.hanging.append(f"{proc.wid} (pid {proc.pid}): {proc.hung}")
        status = proc.status
        by_signal = status is not None and os.WIFSIGNALED(status)
        if proc.doomed_at is not None:
            deaths[proc.wid] = proc.doomed_at
        elif by_signal or (status is not None and os.waitstatus_to_exitcode(status) != 0):
            code = os.waitstatus_to_exitcode(status) if status is not None else None
            tally.crashed.append(f"{proc.wid} (pid {proc.pid}) ended with {code} unasked")
            deaths[proc.wid] = time.time()
    return deaths


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.worker:
        worker = Worker(args.worker, args.run_dir, args.connect_timeout, args.lease,
                        args.seed, None)
        worker.install_signals()
        worker.run()
        return 0
    why = unsupported()
    if why:
        print(f"chaos: {why}", file=sys.stderr)
        return 2
    cfg = Config(args.workers, args.handovers, args.seconds, args.connect_timeout,
                 args.lease, args.seed, args.mix)
    tally, run_dir = soak(cfg, args.dir, args.keep)
    print(render(tally, cfg, args.markdown))
    if args.keep:
        print(f"\nrun directory and logs: {run_dir}")
    if args.json:
        with open(args.json, "w") as fh:
            # vars(), not asdict(): the counters are dict subclasses that json writes as is
            json.dump({**vars(tally), "handovers": tally.handovers,
                       "bound": cfg.connect_timeout + 1}, fh, indent=1)
    return 1 if tally.failed(cfg.connect_timeout + 1) else 0


if __name__ == "__main__":
    sys.exit(main())
