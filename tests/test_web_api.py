"""The dashboard's JSON API over real HTTP, on a directory this process holds: paging,
filtered retry and purge, and the records workers keep of themselves."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from faults import child_env
from test_tasks_support import until
from test_web_auth import http_call

from diskqueue import TaskQueue
from diskqueue.tasks import layout as R
from diskqueue.tasks.layout import NS_WORKERS
from diskqueue.tasks.worker.presence import STALE, alive

pytest.importorskip("flask")
pytest.importorskip("waitress")
from diskqueue.web import Dashboard  # noqa: E402
from diskqueue.web.source import Source  # noqa: E402


def _post(dash: Dashboard, action: str, body: dict[str, Any]) -> Any:
    _, page, _ = http_call(dash.url)
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    status, out, _ = http_call(dash.url + f"api/dead/{action}", method="POST", body=body,
                           headers={"X-CSRF-Token": csrf})
    assert status == 200, out
    return out[action]


def test_waiting_jobs_come_a_page_at_a_time_in_order(tmp_path: Path) -> None:
    tasks = TaskQueue(str(tmp_path / "jobs"))
    ids = [job.id for job in tasks.enqueue_many("resize", range(120))]
    later = tasks.apply("resize", args=(0,), delay=600, priority=3)
    with Dashboard(tasks.path, port=0) as dash:
        seen: list[str] = []
        after = ""
        pages = 0
        while True:
            _, page, _ = http_call(dash.url + f"api/jobs?queue=default&after={after}")
            seen += [job["id"] for job in page["jobs"]]
            pages += 1
            if not page["next"]:
                break
            after = page["next"]
        assert seen == ids and pages == 3
        _, sched, _ = http_call(dash.url + "api/jobs?state=scheduled")
        assert [j["id"] for j in sched["jobs"]] == [later.id]
        assert sched["jobs"][0]["eta"] == pytest.approx(time.time() + 600, abs=30)
    tasks.close()


def test_retry_and_purge_what_the_filter_shows(tmp_path: Path) -> None:
    tasks = TaskQueue(str(tmp_path / "jobs"))

    @tasks.task
    def parse(text: str) -> None:
        raise ValueError(f"bad {text}")

    @tasks.task
    def fetch(url: str) -> None:
        raise ConnectionError(f"refused {url}")

    jobs = [parse.delay("a"), parse.delay("b"), fetch.delay("x")]
    worker = tasks.start(concurrency=2)
    until(lambda: all(j.state == "dead" for j in jobs), 20, "three dead jobs")
    worker.stop()
    with Dashboard(tasks.path, port=0) as dash:
        _, page, _ = http_call(dash.url + "api/dead?error=REFUSED")
        assert [j["id"] for j in page["jobs"]] == [jobs[2].id]
        assert _post(dash, "retry", {"task": "parse", "error": "bad a"}) == 1
        assert [j.state for j in jobs] == ["pending", "dead", "dead"]
        assert _post(dash, "purge", {"task": "parse"}) == 1
        assert _post(dash, "retry", {}) == 1  # all: the fetch job
        _, page, _ = http_call(dash.url + "api/dead")
        assert page["jobs"] == []
        status, body, _ = http_call(dash.url + "api/dead/retry", method="POST",
                                body={"id": jobs[0].id})
        assert status == 403  # no CSRF token: nothing more happens
        _, over, _ = http_call(dash.url + "api/overview")
        assert over["samples"][-1]["queues"]["default"]["dead"] == 0
    tasks.close()


def test_workers_announce_themselves_until_they_stop(tmp_path: Path) -> None:
    tasks = TaskQueue(str(tmp_path / "jobs"))

    @tasks.periodic(every=3600)
    def hourly() -> str:
        return "ok"

    worker = tasks.start(concurrency=3)
    try:
        with Dashboard(tasks.path, port=0, interval=0.2) as dash:
            _, over, _ = http_call(dash.url + "api/overview")
            (record,) = over["workers"]
            assert record["concurrency"] == 3 and record["pool"] == "thread"
            assert record["queues"] == ["default"] and record["running"] == []
            (tick,) = over["periodic"]
            assert tick["task"] == "hourly" and tick["schedule"] == "every 3600 s"
            assert tick["next"] == (int(time.time()) // 3600 + 1) * 3600
            worker.stop()
            until(lambda: http_call(dash.url + "api/overview")[1]["workers"] == [], 10,
                  "the record to go")
    finally:
        worker.stop()
        tasks.close()
    now = time.time()
    assert alive({"beat": now - 1}, now) and not alive({"beat": now - STALE - 1}, now)


def test_a_new_worker_drops_the_records_of_workers_gone(tmp_path: Path) -> None:
    """A worker killed with SIGKILL leaves its record; the next worker to start drops it."""
    path = str(tmp_path / "jobs")
    killed = subprocess.Popen([sys.executable, "-c", textwrap.dedent('''
        import sys, time
        from diskqueue import TaskQueue
        tasks = TaskQueue(sys.argv[1])
        tasks.start(concurrency=1)
        print("started", flush=True)
        time.sleep(60)
    '''), path], env=child_env(), stdout=subprocess.PIPE)
    assert killed.stdout is not None and killed.stdout.readline() == b"started\n"
    killed.kill()
    killed.wait()
    tasks = TaskQueue(path)
    source = Source(path)
    try:
        left = source.eng.scan_records(NS_WORKERS)
        assert len(left) == 1  # the killed worker's record, still there
        record = R.unpack(bytes(left[0][1]))
        assert record["pid"] == killed.pid
        # shown while it could still be alive, not once it is stale
        assert [w["pid"] for w in source.workers()] == [killed.pid]
        old = dict(record, beat=time.time() - STALE - 1)
        source.eng.write_records([(NS_WORKERS, bytes(left[0][0]), R.pack(old))])
        assert source.workers() == []
        worker = tasks.start(concurrency=1)
        mine = worker.counters.worker_id.encode()
        assert [bytes(k) for k, _ in source.eng.scan_records(NS_WORKERS)] == [mine]
        worker.stop()
        assert source.eng.scan_records(NS_WORKERS) == []
    finally:
        source.close()
        tasks.close()
