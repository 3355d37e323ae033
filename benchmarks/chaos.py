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
    redelivered   a reservation handed out again: allowed when its reserver died,
                  closed its handles (a failed ack, say) or its lease ran out, not
                  allowed otherwise
    stall         the longest call, less the time it was asked to wait and the moments
                  past that wait when the machine stood still (a process of the soak
                  that only sleeps 10 ms at a time woke late) or the caller was stopped

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
import inspect
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Optional, TypeVar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import chaos_clock  # noqa: E402
from chaos_rounds import DEFAULT_MIX, KINDS, Chaos, Config, Fleet  # noqa: E402
from chaos_tally import Accounting, Tally, drain, render  # noqa: E402
from chaos_worker import DIRS, Worker  # noqa: E402

import diskqueue as dq  # noqa: E402

N = TypeVar("N", int, float)


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


def positive(kind: Callable[[str], N]) -> Callable[[str], N]:
    def parse(text: str) -> N:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=positive(int), default=6,
                    help="worker processes (default 6)")
    ap.add_argument("--handovers", type=positive(int), default=1000,
                    help="holder rounds to run (default 1000)")
    ap.add_argument("--seconds", type=positive(float), default=600,
                    help="stop the rounds after this long even if fewer ran (default 600)")
    ap.add_argument("--connect-timeout", type=positive(float), default=2.0,
                    help="connect_timeout= of every handle, in seconds (default 2)")
    ap.add_argument("--lease", type=positive(float), default=5.0,
                    help="lease of each reservation, in seconds (default 5)")
    ap.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX),
                    help=f"relative weight of each kind of round (default {DEFAULT_MIX})")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--dir", help="parent of the run directory (default: the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the directories and logs")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    for hidden in ("--worker", "--run-dir", "--clock"):  # how the soak starts its own workers
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
    ticks = os.path.join(run_dir, "clock.txt")
    clock = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--clock", ticks])
    try:
        fleet.reap()  # starts the workers
        chaos.run()
    finally:
        fleet.stop_all()
        clock.kill()
        clock.wait()
    tally.seconds = time.monotonic() - started
    with open(os.path.join(run_dir, "rounds.jsonl"), "w") as fh:  # for a post-mortem
        fh.writelines(json.dumps(vars(rnd)) + "\n" for rnd in chaos.rounds)
    _count_rounds(chaos, tally)
    left, tally.drain_notes = drain(run_dir, cfg.connect_timeout)
    account = Accounting(cfg, tally)
    account.holders = chaos.holders
    account.machine = chaos_clock.Standstills(chaos_clock.read(ticks))
    tally.standstill, tally.standstill_total = account.machine.longest, account.machine.total
    account.pid_deaths = {p.pid: p.doomed_at for p in fleet.procs.values() if p.doomed_at}
    for rnd in chaos.rounds:
        if rnd.kind == "stop":
            account.stopped[rnd.pid].append((rnd.at, rnd.resumed or math.inf))
    account.read(fleet.logs)
    account.settle(_fates(fleet, tally), left, time.time())
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return tally, run_dir


def _count_rounds(chaos: Chaos, tally: Tally) -> None:
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


def _fates(fleet: Fleet, tally: Tally) -> dict[str, float]:
    """When each process that did not end by itself was hit (worker id -> time), and
    note the ones that hung or crashed."""
    deaths: dict[str, float] = {}
    for proc in fleet.procs.values():
        if proc.hung:
            tally.hanging.append(f"{proc.wid} (pid {proc.pid}): {proc.hung}")
            tally.example("process left hanging", tally.hanging[-1])
        status = proc.status
        by_signal = status is not None and os.WIFSIGNALED(status)
        if proc.doomed_at is not None:
            deaths[proc.wid] = proc.doomed_at
        elif by_signal or (status is not None and os.waitstatus_to_exitcode(status) != 0):
            code = os.waitstatus_to_exitcode(status) if status is not None else None
            tally.crashed.append(f"{proc.wid} (pid {proc.pid}) ended with {code} unasked")
            tally.example("process crashed", tally.crashed[-1])
            deaths[proc.wid] = time.time()
    return deaths


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.clock:
        chaos_clock.tick(args.clock)
        return 0
    if args.worker:
        worker = Worker(args.worker, args.run_dir, args.connect_timeout, args.lease,
                        args.seed)
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
