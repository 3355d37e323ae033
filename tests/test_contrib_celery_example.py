"""examples/scale-out/celery_app.py runs on a diskqueue directory and, when a
redis-server is installed, on Redis: the broker URL is the only change, and the
results are the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("celery")

from celery_support import REDIS_MISSING, REPO, redis_server, wait_for  # noqa: E402
from faults import child_env  # noqa: E402

EXAMPLE = REPO / "examples" / "scale-out"
ORDERS = 30


def expected() -> dict[int, int]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        from celery_app import order_lines
    finally:
        sys.path.remove(str(EXAMPLE))
    return {n: sum(q * p for q, p in order_lines(n)) for n in range(ORDERS)}


def run_example(tmp_path: Path, broker: str) -> dict[int, int]:
    results = tmp_path / "results"
    env = child_env({"CELERY_BROKER": broker, "ORDER_RESULTS": str(results)})
    env["PYTHONPATH"] = str(EXAMPLE) + ":" + env["PYTHONPATH"]
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool", "threads",
         "--concurrency", "4", "--without-gossip", "--without-mingle"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        sent = subprocess.run([sys.executable, str(EXAMPLE / "celery_app.py"), str(ORDERS)],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60)
        assert sent.returncode == 0, sent.stderr
        wait_for(lambda: len(list(results.glob("*.json"))) == ORDERS, 60,
                 f"{ORDERS} results")
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
    found = {}
    for path in results.glob("*.json"):
        record = json.loads(path.read_text())
        found[record["order"]] = record["cents"]
    return found


def test_example_runs_on_a_directory(tmp_path: Path) -> None:
    assert run_example(tmp_path, f"diskqueue://{tmp_path / 'queue'}") == expected()


@pytest.mark.skipif(REDIS_MISSING, reason="redis-server is not installed")
def test_example_runs_on_redis_with_only_the_url_changed(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        assert run_example(tmp_path, url) == expected()
