"""The chaos soak's runner side: its worker processes, and the rounds of chaos.

``Fleet`` starts the workers, copies their pipes to log files, reaps every process
(forked grandchildren too) and kills what hangs. ``Chaos`` finds a directory's holder
and makes it leave, one way per round.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional, cast

from chaos_worker import DIRS, FORK_LIFE, SIGNALS, Line

try:
    import resource
except ImportError:  # not POSIX: no full-disk rounds
    resource = None  # type: ignore[assignment]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chaos.py")
KINDS = ("close", "kill", "term", "stop", "fork", "disk")
# Rounds of each kind, relatively. A stop round lasts connect_timeout + 1.5 s while the
# others take a fraction of a second, so stops are rarer to keep a run to minutes.
DEFAULT_MIX = "close=3,kill=3,term=2,fork=1.5,stop=0.4,disk=0.8"


@dataclass(frozen=True)
class Config:
    workers: int = 6
    handovers: int = 1000
    seconds: float = 600.0
    connect_timeout: float = 2.0
    lease: float = 5.0
    seed: int = 1
    mix: dict[str, float] = field(default_factory=dict)


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
        self.respawn = True  # keep cfg.workers main workers running, until the end
        _become_subreaper()

    def spawn(self) -> None:
        self.spawned += 1
        wid = f"w{self.spawned}"
        argv = [sys.executable, SCRIPT, "--worker", wid,
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
                parents = [p.pid for p in self.procs.values() if p.wid == ev["w"]]
                if parents:
                    self.forks[parents[0]] = int(ev["child"])

    @property
    def grace(self) -> float:
        """How long a process may take to exit once told to: the call under way may
        wait out connect_timeout, then closing each directory may too (a client that
        handed out takes looks for the next holder to settle them)."""
        return (1 + len(DIRS)) * self.cfg.connect_timeout + 5

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
        for _ in range(self.cfg.workers - main if self.respawn else 0):
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
        _dump_and_kill([proc.pid for proc in overdue])

    def stop_all(self) -> None:
        """Ask every live process to finish; kill those that do not within the grace."""
        self.respawn = False
        with self.lock:
            live = [p for p in self.procs.values() if p.status is None]
            for proc in live:
                proc.deadline = min(proc.deadline or 1e18, time.monotonic() + self.grace)
        for proc in live:
            _signal(proc.pid, signal.SIGCONT)
            _signal(proc.pid, signal.SIGINT)
        end = time.monotonic() + self.grace + 2
        while time.monotonic() < end:
            self.reap()
            with self.lock:
                if all(p.status is not None for p in self.procs.values()):
                    break
            time.sleep(0.05)
        for reader in self.readers:
            reader.join(timeout=self.grace)
        self.sweep()

    def sweep(self) -> None:
        """Nothing of ours outlives the run: a process still there now (a child forked
        just before the end, say) is killed and reported."""
        self.reap()
        with self.lock:
            left = [p for p in self.procs.values() if p.status is None]
            for proc in left:
                proc.hung = proc.hung or "still running at the end"
        _dump_and_kill([proc.pid for proc in left])
        time.sleep(0.1)
        self.reap()


def _become_subreaper() -> None:
    """Orphaned forked children become ours to reap (Linux); elsewhere init reaps them."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _dump_and_kill(pids: list[int]) -> None:
    """SIGKILL processes that hang, after SIGQUIT has their threads' stacks written to
    their logs (see Worker.install_signals)."""
    if not pids:
        return
    for pid in pids:
        _signal(pid, signal.SIGCONT)
        _signal(pid, signal.SIGQUIT)
    time.sleep(0.5)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


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
    resumed: Optional[float] = None  # stop rounds: time.time() of the SIGCONT


@dataclass(frozen=True)
class Holder:
    """A directory's pid file named a new holder at some time in (since, seen]."""

    since: float
    seen: float
    pid: int


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
        self.rng = random.Random(cfg.seed)  # the kinds: the same sequence for a seed
        self.jitter = random.Random(cfg.seed + 1)  # delays, drawn as timing allows
        self.kinds, self.weights = zip(*cfg.mix.items(), strict=True)
        self.rounds: list[Round] = []
        self.active: list[Round] = []
        self.todo: list[tuple[float, Callable[[], None]]] = []  # (monotonic due, action)
        self.skipped = 0  # turns with no live holder of ours to hit
        self.stuck = ""  # why the rounds ended early
        self.pid_file_missed = 0  # rounds whose holder the pid file did not name
        self.unnamed: dict[str, tuple[int, float]] = {}  # dir -> (lock holder, since)
        self.missed_examples: list[str] = []
        self.holders: dict[str, list[Holder]] = {d: [] for d in DIRS}
        self.looked = 0.0  # time.time() of the previous look at the pid files

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
            time.sleep(self.jitter.uniform(0, 0.05))
        self.finish()

    def finish(self) -> None:
        """Let the rounds under way end (SIGCONT, limits lifted, takeovers seen); what
        is still scheduled after that runs now."""
        end = time.monotonic() + self.cfg.connect_timeout + 3
        while (self.active or self.todo) and time.monotonic() < end:
            self.fleet.reap()
            self.tick()
            time.sleep(0.01)
        todo, self.todo = self.todo, []
        for _, action in todo:
            action()

    def later(self, delay: float, action: Callable[[], None]) -> None:
        self.todo.append((time.monotonic() + delay, action))

    def tick(self) -> None:
        self.note_holders()
        now = time.monotonic()
        due = [a for a in self.todo if a[0] <= now]
        self.todo = [a for a in self.todo if a[0] > now]
        for _, action in due:
            action()
        for rnd in self.active:
            if rnd.watching:
                self.watch(rnd)
        self.active = [r for r in self.active if not r.done]

    def note_holders(self) -> None:
        """Each directory's holders over time, as its pid file names them: the tally
        tells a reservation handed out again after a handover from one without. A
        change is known to lie between the previous look and this one."""
        now = time.time()
        for d in DIRS:
            pid = holder_of(os.path.join(self.run_dir, d))
            if pid is not None and (not self.holders[d] or self.holders[d][-1].pid != pid):
                self.holders[d].append(Holder(self.looked, now, pid))
        self.looked = now

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
            self.missed_examples.append(
                f"{d}: pid file names {pid}, LOCK held by {locker} at {time.time():.3f}")
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
            _signal(pid, signal.SIGUSR2)  # the worker forks at its next op boundary
            self.later(0.01, lambda: self.kill_parent(rnd))
        elif kind == "disk":
            self.starve(rnd)

    def resume(self, rnd: Round) -> None:
        _signal(rnd.pid, signal.SIGCONT)
        rnd.resumed = time.time()
        rnd.done = True

    def kill_parent(self, rnd: Round) -> None:
        """Once the child is there (or after 2 s: the parent may be stuck in a call),
        let parent and child work side by side a moment, then kill the parent."""
        if rnd.forked is None:
            if rnd.pid not in self.fleet.forks and time.monotonic() - rnd.started < 2:
                self.later(0.01, lambda: self.kill_parent(rnd))
                return
            rnd.forked = rnd.pid in self.fleet.forks
            self.later(self.jitter.uniform(0, 0.1), lambda: self.kill_parent(rnd))
            return
        self.fleet.doom(rnd.pid, signal.SIGKILL)
        rnd.started, rnd.watching = time.monotonic(), True

    def starve(self, rnd: Round) -> None:
        """Every write of the holder that would grow a file fails for a moment."""
        if resource is None or not hasattr(resource, "prlimit"):
            rnd.done = True
            return
        path = os.path.join(self.run_dir, rnd.d)
        logs = []
        for name in os.listdir(path):
            if name.endswith(".log"):
                try:
                    logs.append(os.path.getsize(os.path.join(path, name)))
                except FileNotFoundError:
                    pass  # an old log LevelDB deleted meanwhile
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

        self.later(self.jitter.uniform(0.2, 0.6), lift)

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
