"""A call that waited on a holder that did not answer, and then saw it die, gives up
connect_timeout after it began (and a little), not after it began to look for the next
holder: its wait on the first holder and its search for the next share one bound, as an
open's do (the soak's calls of 3.5 s with connect_timeout 2 s: a stop round's holder,
resumed and killed at once, while a client's call waited on it)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import faults
import pytest
from test_client_timeouts import holder, stop, stopped, timed
from test_one_call_bound import CLIENT, HOLDER, _start

import diskqueue as dq

BOUND = 2.0  # the client's connect_timeout (in CLIENT)


@pytest.mark.timeout(90)
def test_a_call_whose_stopped_holder_dies_gives_up_within_one_bound(tmp_path):
    path = tmp_path / "q"
    first = _start(HOLDER, path)
    client = None
    try:
        assert first.stdout.readline() == "ready\n"
        client = _start(CLIENT, path, tmp_path / "scratch", stdin=subprocess.PIPE)
        assert client.stdout.readline() == "connected\n"  # a client that cannot own
        stop(first.pid)
        client.stdin.write("go\n")  # its enqueue reaches the stopped holder, and waits
        client.stdin.flush()
        time.sleep(1.2)
        first.kill()  # the holder dies; the client looks for a next one: there is none
        first.wait()
        took, outcome = client.stdout.readline().split()
        assert client.wait(30) == 0
        assert outcome == "Locked", outcome
        # one bound from the call's start (it waited 1.2 s on the first holder), plus
        # slack for a loaded machine; before, the search had a bound of its own (3.2 s+)
        assert float(took) <= BOUND + 0.8, (took, outcome)
    finally:
        faults.end(first, client)


@pytest.mark.timeout(60)  # before: signals every 0.4 s kept it waiting for ever
def test_signals_do_not_stretch_a_call_past_its_bound(tmp_path):
    """Python repeats a receive that a signal interrupted, and the kernel's receive
    time-out starts again with it: a process that gets signals (a worker pool's, say)
    while it waits on a holder that does not answer must still give up in time."""
    path = str(tmp_path / "q")
    poked = threading.Event()
    done = threading.Event()

    def poke() -> None:
        while not done.wait(0.4):
            os.kill(os.getpid(), signal.SIGUSR1)
            poked.set()

    old = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        with holder(path) as child, dq.Queue(path, connect_timeout=1.5) as q:
            q.enqueue("before")
            with stopped(child):
                threading.Thread(target=poke, daemon=True).start()
                exc, took = timed(q.enqueue, "late")
                done.set()
            assert isinstance(exc, dq.OutcomeUnknown), exc
            assert poked.is_set()
            assert took < 1.5 + 0.8, took  # before: 1.5 s again after each signal
    finally:
        done.set()
        signal.signal(signal.SIGUSR1, old)


# As CLIENT, but its second call begins with no connection (its first, to a directory
# nobody holds, gave up): it must find an owner first, and then wait for its answer.
CLIENT_FROM_NOTHING = CLIENT.replace(
    """        started = time.monotonic()
        try:
            q.enqueue("second")""",
    """        try:
            q.enqueue("nobody holds it")
        except dq.Locked:
            print("gave up", flush=True)
        started = time.monotonic()
        try:
            q.enqueue("second")""")

STOPS_ITSELF = """
import os, signal, sys, diskqueue as dq
q = dq.Queue(sys.argv[1])
os.kill(os.getpid(), signal.SIGSTOP)  # holds the directory, and never answers
"""


@pytest.mark.timeout(90)
def test_a_call_that_must_connect_first_shares_its_bound_with_the_answer(tmp_path):
    # In the soak: a forked child's close() connected to a new holder 1.6 s into its
    # bound, and that holder was stopped: it waited a whole connect_timeout more.
    assert CLIENT_FROM_NOTHING != CLIENT
    path = tmp_path / "q"
    first = _start(HOLDER, path)
    client = second = None
    try:
        assert first.stdout.readline() == "ready\n"
        client = _start(CLIENT_FROM_NOTHING, path, tmp_path / "scratch",
                        stdin=subprocess.PIPE)
        assert client.stdout.readline() == "connected\n"
        first.kill()
        first.wait()
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline() == "gave up\n"  # its connections are gone
        time.sleep(1.0)  # its next call looks for an owner meanwhile
        second = _start(STOPS_ITSELF, path)
        took, outcome = client.stdout.readline().split()
        assert client.wait(30) == 0
        assert outcome in ("Locked", "OutcomeUnknown"), outcome
        # one bound from the call's start; before, the answer had one of its own after
        # the search (3.4 s and more)
        assert float(took) <= BOUND + 0.8, (took, outcome)
    finally:
        faults.end(first, client, second)
