"""Real ``dramatiq`` workers on DiskQueueBroker: several processes and threads sharing
one directory with producers in other processes, SIGKILL mid-drain, and the example app
of docs/scale-out.md run by its documented commands, on diskqueue and on Redis."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import faults
import pytest

pytest.importorskip("dramatiq", reason="needs the dramatiq extra")

ROOT = Path(faults.REPO_ROOT)
EXAMPLE = ROOT / "examples" / "scale-out" / "dramatiq_app.py"
WORKER = "dramatiq_app:broker --processes 2 --threads 2"

APP = """
import os, time
import dramatiq
from diskqueue.contrib.dramatiq import DiskQueueBroker

broker = DiskQueueBroker(os.environ["QDIR"])
dramatiq.set_broker(broker)

@dramatiq.actor(max_retries=0)
def job(i):
    time.sleep(0.002)
    fd = os.open(os.environ["DONE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"%d\\n" % i)   # one small O_APPEND write: whole lines only
    os.close(fd)
"""


def _env(cwd: Path, **extra: str) -> dict[str, str]:
    env = faults.child_env(extra)
    # ``python`` and ``dramatiq`` in the commands are this interpreter's.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _worker(cmd: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A ``dramatiq`` command in its own process group (so all its processes can be
    signalled at once), its output to a log file in ``cwd``."""
    log = open(cwd / "worker.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(["bash", "-c", f"exec env {cmd}"], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    """SIGTERM to the ``dramatiq`` main process (it stops its workers in order), or
    SIGKILL to every process of the group at once."""
    try:
        if kill:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def _wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _done(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [int(line) for line in log.read_text().split("\n") if line]


# -- many processes, one directory, SIGKILL ---------------------------------------------
def test_sigkill_of_the_workers_mid_drain_loses_nothing(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    done_log = tmp_path / "done.log"
    env = _env(tmp_path, QDIR=str(tmp_path / "q"), DONE_LOG=str(done_log))
    per_producer, producers = 400, 2
    total = per_producer * producers
    worker = _worker("dramatiq app:broker --processes 2 --threads 2", tmp_path, env)
    sending = [subprocess.Popen(
        [sys.executable, "-c",
         f"import app\nfor i in range({k * per_producer}, {(k + 1) * per_producer}): "
         "app.job.send(i)"], cwd=tmp_path, env=env) for k in range(producers)]
    try:
        _wait_for(lambda: len(_done(done_log)) >= total // 4, 60, "a quarter of the jobs")
        _stop(worker, kill=True)               # every worker process, mid-drain
        killed_at = len(set(_done(done_log)))
        for producer in sending:
            assert producer.wait(timeout=60) == 0   # producers carry on through the kill
        assert killed_at < total
        worker = _worker("dramatiq app:broker --processes 2 --threads 2", tmp_path, env)
        _wait_for(lambda: set(_done(done_log)) == set(range(total)), 120, "every job")
    finally:
        _stop(worker)
        for producer in sending:
            producer.kill()
    runs = _done(done_log)
    # At least once: only the jobs running at the kill may have run twice.
    assert len(runs) - total <= 2 * 2 * 3, f"{len(runs) - total} jobs ran twice"


# -- the example app, as the docs run it ----------------------------------------------------
def _section() -> str:
    """The Dramatiq section of the scale-out page."""
    text = (ROOT / "docs" / "scale-out.md").read_text()
    assert "\n## Dramatiq\n" in text, "docs/scale-out.md has no Dramatiq section"
    return text.split("\n## Dramatiq\n", 1)[1].split("\n## ", 1)[0]


def _commands(marker: str) -> list[str]:
    """The lines of the section's first bash block that contains ``marker``."""
    for block in _section().split("```bash\n")[1:]:
        body = block.split("```", 1)[0]
        if marker in body:
            return [line for line in body.splitlines() if line.strip()]
    raise AssertionError(f"no bash block with {marker!r} in the Dramatiq section")


def _run_example(tmp_path: Path, env: dict[str, str], send: str, work: str) -> dict:
    """Run the documented producer and worker commands on a copy of the example; the
    workers' report once it is complete."""
    where = tmp_path / "examples" / "scale-out"
    where.mkdir(parents=True)
    shutil.copy(EXAMPLE, where)
    subprocess.run(["bash", "-c", send], cwd=where, env=env, check=True, timeout=120)
    expected = json.loads(subprocess.run(
        [sys.executable, "-c", "import json, dramatiq_app as a; "
         "print(json.dumps(a.expected(100)))"],
        cwd=where, env=env, check=True, timeout=60, capture_output=True).stdout)

    def report() -> dict:
        return json.loads(subprocess.run(
            ["bash", "-c", "python dramatiq_app.py report"], cwd=where, env=env,
            check=True, timeout=60, capture_output=True).stdout)

    worker = _worker(work, where, env)
    try:
        _wait_for(lambda: report() == expected, 120, "the example's results")
    finally:
        _stop(worker)
    assert worker.returncode == 0, (where / "worker.log").read_text()[-3000:]
    return report()


def test_docs_commands_are_the_ones_tested():
    cd, send, work = _commands("cd examples/scale-out")
    assert cd == "cd examples/scale-out"
    assert send == "python dramatiq_app.py send 100"
    assert work == f"dramatiq {WORKER}"
    on_redis = _commands("APP_BROKER=redis://")
    assert on_redis == [f"APP_BROKER=redis://127.0.0.1:6379/0 {send}",
                        f"APP_BROKER=redis://127.0.0.1:6379/0 {work}"]


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    """A redis-server of this test's own, on 127.0.0.1 and a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        _wait_for(lambda: _pings(client), 20, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize("on", ["diskqueue", "redis"])
def test_example_runs_on_diskqueue_and_on_redis(tmp_path, request, on):
    """The documented commands, then the same commands with the broker line changed
    (``APP_BROKER``), give the same results: ``_run_example`` waits for exactly the
    results the app expects of ``send 100``."""
    if on == "diskqueue":
        _, send, work = _commands("cd examples/scale-out")
    else:
        url = request.getfixturevalue("redis_url")
        send, work = (line.replace("redis://127.0.0.1:6379/0", url)
                      for line in _commands("APP_BROKER=redis://"))
    results = _run_example(tmp_path, _env(tmp_path), send, work)
    assert results["square-99"] == 99 * 99 and results["flaky-0"] == "retried"
    assert results["later-0"] is True
