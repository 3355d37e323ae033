"""The chaos soak, short: about 100 holder rounds of every kind, on real processes.

``benchmarks/chaos.py`` runs worker processes on three shared directories while their
holder is closed, SIGKILLed, SIGTERMed, stopped past ``connect_timeout``, forked then
killed, and starved of disk; it accounts for every token. Here it runs in a child
process (it makes itself the reaper of its workers' orphans, which a test process
should not become) and every promise of SPEC §6 is checked on its figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from types import ModuleType

import faults
import pytest


def _load_clock() -> ModuleType:
    """benchmarks/chaos_clock.py (standard library only), without putting benchmarks/ on
    sys.path, where its scripts' names could shadow other modules."""
    spec = importlib.util.spec_from_file_location(
        "chaos_clock", os.path.join(faults.REPO_ROOT, "benchmarks", "chaos_clock.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chaos_clock = _load_clock()

KINDS = ("close", "kill", "term", "stop", "fork", "disk")
CONNECT_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """One short soak, shared by the tests below: its figures and its printed table."""
    tmp_path = tmp_path_factory.mktemp("chaos")
    result = tmp_path / "chaos.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/chaos.py", "--handovers", "100", "--seconds", "45",
         "--workers", "4", "--connect-timeout", str(CONNECT_TIMEOUT), "--seed", "7",
         "--dir", str(tmp_path), "--json", str(result)],
        cwd=faults.REPO_ROOT, env=faults.child_env(), capture_output=True, text=True,
        timeout=140,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return json.loads(result.read_text()), proc.stdout


@pytest.mark.timeout(150)
def test_short_soak_loses_nothing_and_hangs_nobody(soak):
    r, table = soak
    problems = [text for bad, text in [
        (r["handovers"] < 50, f"only {r['handovers']} holder rounds ran"),
        (r["stuck"], f"the rounds ended early: {r['stuck']}"),
        (any(not r["rounds"].get(k) for k in KINDS), f"not every kind ran: {r['rounds']}"),
        (r["lost"], f"{r['lost']} acknowledged items lost"),
        (r["phantom"], f"{r['phantom']} items came out that nobody put in"),
        (r["hanging"], f"processes left hanging: {r['hanging']}"),
        (r["crashed"], f"processes crashed: {r['crashed']}"),
        (r["drain_notes"], f"the directories could not be drained as they were: "
                           f"{r['drain_notes']}"),
    ] if bad]
    assert not problems, "\n".join(problems) + "\n\n" + table


@pytest.mark.timeout(150)
def test_short_soak_no_call_stalls_past_its_bound(soak):
    r, table = soak
    assert r["stall"] <= CONNECT_TIMEOUT + 1, (
        f"a call stalled {r['stall']:.1f} s ({r['stall_call']})\n\n{table}")


@pytest.mark.timeout(30)
def test_the_soaks_clock_writes_down_when_it_did_not_run(tmp_path):
    """The stall check takes out the moments the machine stood still, as the soak's clock
    saw them: a clock that cannot run (stopped here, as a paused machine would stop it)
    writes the moment down, and nothing when it runs."""
    ticks = tmp_path / "clock.txt"
    clock = subprocess.Popen([sys.executable, "benchmarks/chaos.py", "--clock", str(ticks)],
                             cwd=faults.REPO_ROOT, env=faults.child_env())
    try:
        time.sleep(1.0)  # started, and ticking
        calm = ticks.read_text() if ticks.exists() else ""
        before = time.time()
        clock.send_signal(signal.SIGSTOP)
        time.sleep(0.6)
        clock.send_signal(signal.SIGCONT)
        after = time.time()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(ticks.read_text()) == len(calm):
            time.sleep(0.05)
    finally:
        clock.kill()
        clock.wait()
    spans = chaos_clock.read(str(ticks))
    assert len(calm.splitlines()) <= 2, calm  # the scheduler may be late now and then
    stood = chaos_clock.overlap(before, after, spans)
    assert 0.5 <= stood <= after - before, (spans, before, after)


def test_a_calls_stall_leaves_out_the_machines_standstills_past_its_wait():
    """Only the part of a standstill past what the call asked to wait is taken out: its
    wait's own timer ran on through it."""
    spans = [(10.0, 10.5), (12.0, 13.0), (12.5, 14.0)]
    assert chaos_clock.overlap(11.0, 15.0, spans) == pytest.approx(2.0)
    assert chaos_clock.overlap(10.2, 11.0, spans) == pytest.approx(0.3)
    assert chaos_clock.overlap(14.0, 20.0, spans) == 0.0
    machine = chaos_clock.Standstills(spans)
    assert machine.within(13.5, 13.6) == [(12.0, 13.0), (12.5, 14.0)]


@pytest.mark.timeout(150)
def test_short_soak_delivers_nothing_twice(soak):
    r, table = soak
    problems = [text for bad, text in [
        (sum(r["duplicated"].values()), f"duplicated: {r['duplicated']}"),
        (r["redelivered_disallowed"],
         f"reservations handed out again while their reserver lived and its lease ran: "
         f"{r['redelivered_disallowed']}"),
    ] if bad]
    assert not problems, "\n".join(problems) + "\n\n" + table
