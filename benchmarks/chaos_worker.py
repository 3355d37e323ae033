"""The chaos soak's worker process: random calls on three directories, each logged.

Started by ``benchmarks/chaos.py`` as ``chaos.py --worker ID``. Each call is written
to stdout (a pipe to the soak) twice: what is attempted, before the call, and what
came back, after it; a line the worker did not finish writing was never acknowledged.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, TypedDict, TypeVar, Union

import diskqueue as dq

DIRS = ("line", "prio", "prefix")
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
# The signals the soak sends a worker; it starts with them blocked (see Fleet.spawn)
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


class Worker:
    """One soak process: random calls on the three directories, each logged twice."""

    def __init__(self, wid: str, run_dir: str, connect_timeout: float, lease: float,
                 seed: int) -> None:
        self.wid, self.run_dir, self.lease = wid, run_dir, lease
        self.connect_timeout = connect_timeout
        self.rng = random.Random(f"{seed}/{wid}")
        self.flags: set[str] = set()
        self.until: Optional[float] = None  # a forked child's end of life
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
        # A worker that hangs is sent SIGQUIT before it is killed: its threads' stacks
        # go to the log, written from C, whatever its Python threads are stuck in.
        faulthandler.register(signal.SIGQUIT, all_threads=True)
        if hasattr(signal, "SIGXFSZ"):  # a full disk must be an error, not a death
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)

    def done(self) -> bool:
        return "stop" in self.flags or (self.until is not None and time.monotonic() > self.until)

    def run(self) -> None:
        emit({"ev": "hello", "w": self.wid, "p": os.getpid(), "pp": os.getppid()})
        try:
            while not self.done():
                if _terminated:
                    raise SystemExit(_terminated)
                if "close" in self.flags:
                    self.reopen()
                elif "fork" in self.flags:
                    self.fork()
                elif self.open_missing():
                    self.one_op()
                else:
                    time.sleep(0.05)  # no directory can be opened right now
        finally:
            # On its way out, a signal meant for a live worker (the end of the run's
            # SIGINT, a close round's SIGUSR1) must not kill it: Python gives these
            # signals their default action back while it exits, and the tally would
            # count a worker that ended cleanly as crashed.
            for sig in (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
                signal.signal(sig, signal.SIG_IGN)
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
            if self.done():  # each open may wait connect_timeout: stop when told to
                break
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


_terminated = 0  # the exit status a SIGTERM asked for (0: none)


def _exit_on_term(signum: int, frame: object) -> None:
    # Python ignores an exception raised in a finalizer (a __del__, a weakref
    # callback), where a signal handler can land too: the next op boundary exits then.
    global _terminated
    _terminated = 128 + signum
    raise SystemExit(_terminated)


def described(result: object) -> object:
    """What a call returned, as [token, key hex, attempts] rows (key None for get)."""
    if isinstance(result, dq.Item):
        return [[result.value, result.key.hex(), result.attempts]]
    if isinstance(result, list):
        return [[i.value, i.key.hex(), i.attempts] for i in result]
    if isinstance(result, str):  # get() hands back the bare value
        return [[result, None, 0]]
    return None
