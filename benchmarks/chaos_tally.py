"""The chaos soak's accounting: drain what is left, settle every token, and report.

Each token's deliveries are put in time order and judged pair by pair: a dequeued or
acked item that comes out again is duplicated; a reservation that comes out again is
allowed only when its reserver died, closed its handles (which ends its reservations:
see docs/durability.md) or its lease ran out.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional, Union, cast

from chaos_clock import Standstills, overlap
from chaos_rounds import KINDS, ROOT, Config, Holder
from chaos_worker import DIRS, TAKES, Line

import diskqueue as dq

Left = tuple[object, str, str]  # an item drained at the end: value, key hex, directory


def drain(run_dir: str, connect_timeout: float) -> tuple[list[Left], dict[str, str]]:
    """Everything left in the three directories, and a note per directory that could
    not be opened as it was (then it is repaired and drained)."""
    rows: list[Left] = []
    notes: dict[str, str] = {}
    for d in DIRS:
        path = os.path.join(run_dir, d)
        try:
            items = _drain_one(d, path, connect_timeout)
        except dq.DiskQueueError as exc:
            notes[d] = f"{type(exc).__name__}: {str(exc)[:200]}"
            subprocess.run([sys.executable, "-m", "diskqueue", "repair", path],
                           capture_output=True, cwd=ROOT, check=False)
            try:
                items = _drain_one(d, path, connect_timeout)
                notes[d] += "; drained after `diskq repair`"
            except dq.DiskQueueError as again:
                notes[d] += f"; after repair: {type(again).__name__}: {str(again)[:200]}"
                items = []
        rows += [(i.value, i.key.hex(), d) for i in items]
    return rows, notes


def _drain_one(d: str, path: str, connect_timeout: float) -> list[dq.Item]:
    if d == "prefix":
        with dq.PrefixQueue(path, connect_timeout=connect_timeout) as px:
            items: list[dq.Item] = []
            for prefix in px.prefixes():
                items += _take_all(functools.partial(px.dequeue_many, prefix, 256))
            return items
    q: Union[dq.Queue, dq.PriorityQueue]
    q = dq.Queue(path, connect_timeout=connect_timeout) if d == "line" else \
        dq.PriorityQueue(path, connect_timeout=connect_timeout)
    with q:
        return _take_all(lambda: q.dequeue_many(256))


def _take_all(take: Callable[[], list[dq.Item]]) -> list[dq.Item]:
    items: list[dq.Item] = []
    while True:
        try:
            items += take()
        except dq.Empty:
            return items


@dataclass
class Delivery:
    """One time a token came out: by a take, a reservation, or the final drain."""

    t: float  # time.time() the call returned (the drain: the end of the run)
    how: str  # "take" | "reserve" | "left"
    w: str
    key: Optional[str]
    attempts: int
    d: str
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
    redelivered_disallowed: Counter[str] = field(default_factory=Counter)
    phantom: int = 0  # came out, but nobody ever tried to put it in
    stall: float = 0.0
    stall_call: str = ""
    stalls_over: int = 0  # calls that stalled beyond connect_timeout + 1 s
    stall_raw: float = 0.0  # the longest, with the machine's standstills left in
    standstill: float = 0.0  # the longest moment the soak's clock woke late
    standstill_total: float = 0.0
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
        return bool(self.lost or sum(self.duplicated.values())
                    or sum(self.redelivered_disallowed.values())
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
        self.holders: dict[str, list[Holder]] = {}  # see Chaos.note_holders
        self.pid_deaths: dict[int, float] = {}  # pid -> when it was sent a fatal signal
        # pid -> (SIGSTOP, SIGCONT) times: a stopped process's own calls stand still
        # while it is stopped, which is the soak's doing, not a stall of the library.
        self.stopped: dict[int, list[tuple[float, float]]] = defaultdict(list)
        self.machine = Standstills([])  # when the soak's clock woke late: see chaos_clock
        self.pids: dict[str, int] = {}  # worker id -> pid
        # worker id -> when it closed its handles: its reservations end then (a client's
        # when its connection closes, the owner's own when it closes the directory)
        self.closes: dict[str, list[float]] = defaultdict(list)

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
            if isinstance(rec, dict) and rec.get("ev") == "hello":
                self.pids[str(rec["w"])] = int(rec["p"])
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
            if "tok" in call and op not in ("ack", "nack"):
                self.t.maybe += len(call["tok"])  # a failed enqueue may still have landed
            if op in ("ack", "nack"):
                self.settled[(w, call["tok"][0], call["a"])] = (op, outcome)
            if outcome not in ("Empty", "NotReserved"):
                self.t.example(f"error {outcome}", f"{w} {d}.{op}: {end.get('msg')}")
            return
        if op == "close":
            self.closes[w].append(float(call["t0"]))
        if "tok" in call and op not in ("ack", "nack"):
            for tok in call["tok"]:
                self.acked[tok] = d
        elif op in ("ack", "nack"):
            self.settled[(w, call["tok"][0], call["a"])] = (op, "ok")
        elif op in TAKES or op == "reserve":
            how = "reserve" if op == "reserve" else "take"
            for tok, k, attempts in end["got"] or []:
                self.deliveries[tok].append(Delivery(float(end["t1"]), how, w, k,
                                                     attempts, d, float(call["t0"])))

    def stalled(self, call: Line, dt: float, note: str) -> None:
        """Count a call's stall: its duration less what it asked to wait, and less the
        time past that wait during which its process was stopped by the soak or the
        machine stood still (a wait's own timer runs on through either)."""
        t0, wait = float(call["t0"]), float(call.get("wait") or 0)
        stopped = self.stopped.get(self.pids.get(str(call["w"]), -1), [])
        still = overlap(t0 + wait, t0 + dt, stopped, self.machine.within(t0, t0 + dt))
        stall = dt - wait - still
        raw = dt - wait - overlap(t0 + wait, t0 + dt, stopped)
        self.t.stall_raw = max(self.t.stall_raw, raw)
        if stall > self.bound:
            self.t.stalls_over += 1
            self.stalls.append((stall, f"{call['w']} {call['d']}.{call['op']} {stall:.1f} s"
                                       f" from {t0:.3f}{note}"))
        if stall > self.t.stall:
            self.t.stall, self.t.stall_call = stall, f"{call['d']}.{call['op']}{note}"

    def settle(self, deaths: dict[str, float], left: list[Left], end: float) -> None:
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
            elif call["op"] == "nack":  # sent, never answered: it may have given it back
                self.settled.setdefault((w, call["tok"][0], call["a"]), ("nack", "maybe"))
        for _, text in sorted(self.stalls, reverse=True)[:5]:
            self.t.example("stall", text)
        for tok, key, d in left:
            self.deliveries[str(tok)].append(Delivery(end, "left", "-", key, 0, d))
        self.t.left = len(left)
        self.t.acked = len(self.acked)
        self.t.delivered = sum(len(v) for v in self.deliveries.values()) - len(left)
        missing: Counter[str] = Counter(d for tok, d in self.acked.items()
                                        if tok not in self.deliveries)
        for tok, d in self.acked.items():
            if tok not in self.deliveries:
                self.t.example("missing (lost, or taken by a process that died)", f"{tok} ({d})")
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
            died = deaths.get(a.w)
            if died is not None and died <= b.t:
                self.t.redelivered_allowed["reserver died"] += 1
            elif b.t >= a.t0 + self.cfg.lease:
                self.t.redelivered_allowed["lease ran out"] += 1
            elif any(a.t <= t <= b.t for t in self.closes.get(a.w, ())):
                self.t.redelivered_allowed["reserver closed its handles"] += 1
            elif a.key and b.key and a.key != b.key:
                # Once the reservation ended, the item is back at the front, where a
                # Stack's pop put back (its reply lost, or refused on a full disk) moves
                # it to a new key on top; while it lasts, a new key is a copy.
                self.dup("stored twice", text + self.reserver_fate(a, b.t, deaths))
            elif b.how == "left":
                self.t.redelivered_allowed["reserver gone at the end"] += 1
            elif self.handed_over(a.d, a.t, b.t):
                self.t.redelivered_disallowed["after a handover"] += 1
                self.t.example("redelivered, not allowed, after a handover", text)
            else:
                self.t.redelivered_disallowed["without a handover"] += 1
                self.t.example("redelivered, not allowed, without a handover", text)
            return
        if a.key and b.key and a.key != b.key:
            self.dup("stored twice", text)
        else:
            self.dup("dequeued item came back", text)

    def handed_over(self, d: str, start: float, end: float) -> bool:
        """Did directory ``d`` change holder between two times? Its pid file says so,
        or the holder it named at ``start`` was killed before ``end`` (the pid file of
        a new holder can lag behind)."""
        changes = self.holders.get(d, [])
        if any(h.since < end and h.seen > start for h in changes):
            return True
        before = [h.pid for h in changes if h.seen <= start]
        died = self.pid_deaths.get(before[-1]) if before else None
        return died is not None and died <= end

    def reserver_fate(self, a: Delivery, end: float, deaths: dict[str, float]) -> str:
        """What ended reservation ``a`` before ``end``, if anything did: a note."""
        died = deaths.get(a.w)
        if died is not None and died <= end:
            return f" ({a.w} died at {died:.3f})"
        closed = [t for t in self.closes.get(a.w, ()) if a.t <= t <= end]
        if closed:
            return f" ({a.w} closed its handles at {closed[0]:.3f})"
        return f" ({a.w} alive, its handles open)"

    def dup(self, why: str, text: str) -> None:
        self.t.duplicated[why] += 1
        self.t.example(f"duplicated: {why}", text)


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
        ("redelivered, not allowed", _counts(t.redelivered_disallowed)),
        ("never enqueued but delivered", str(t.phantom)),
        ("longest stall", f"{t.stall:.2f} s ({t.stall_call}); {t.stalls_over} calls over "
                          f"{cfg.connect_timeout + 1:g} s"),
        ("  the same, machine standstills left in", f"{t.stall_raw:.2f} s"),
        ("machine stood still (the clock woke late)",
         f"longest {t.standstill:.2f} s, {t.standstill_total:.1f} s in all"),
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
        lines.append(f"\n{kind}, e.g.:" if not markdown else f"\n**{kind}**, e.g.:\n")
        lines += [("- " if markdown else "  ") + text for text in texts]
    return "\n".join(lines)
