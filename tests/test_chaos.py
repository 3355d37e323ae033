"""The chaos soak, short: about 100 holder rounds of every kind, on real processes.

``benchmarks/chaos.py`` runs worker processes on three shared directories while their
holder is closed, SIGKILLed, SIGTERMed, stopped past ``connect_timeout``, forked then
killed, and starved of disk; it accounts for every token. Here it runs in a child
process (it makes itself the reaper of its workers' orphans, which a test process
should not become) and every promise of SPEC §6 is checked on its figures.
"""

from __future__ import annotations

import json
import subprocess
import sys

import faults
import pytest

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


@pytest.mark.xfail(reason="not kept on a loaded machine: when every process stands still "
                          "for a moment (the soak's own loop included), a call's wait "
                          "counts it, and the soak cannot tell that from a stall (5.76 s "
                          "with connect_timeout 2 s once in a run of 400 rounds; see "
                          "docs/durability.md)",
                   strict=False)
@pytest.mark.timeout(150)
def test_short_soak_no_call_stalls_past_its_bound(soak):
    r, table = soak
    assert r["stall"] <= CONNECT_TIMEOUT + 1, (
        f"a call stalled {r['stall']:.1f} s ({r['stall_call']})\n\n{table}")


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
