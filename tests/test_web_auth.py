"""The dashboard's guards over real HTTP (no browser): loopback unless a token is given,
the token on every request, POST with a CSRF token, read-only; and what it shows of
plain structures (never a pickle)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from faults import child_env
from test_tasks_support import diskq, until

from diskqueue import DiskQueueError, Queue, TaskQueue

pytest.importorskip("flask")
pytest.importorskip("waitress")
from diskqueue.web import Dashboard  # noqa: E402


def http_call(url: str, *, method: str = "GET", body: Optional[dict[str, Any]] = None,
          headers: Optional[dict[str, str]] = None) -> tuple[int, Any, Any]:
    """(status, body as JSON or text, headers); never raises on an HTTP error."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=30) as r:
            status, raw, hdrs = r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), exc.headers
    text = raw.decode()
    try:
        return status, json.loads(text), hdrs
    except ValueError:
        return status, text, hdrs


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture
def dead_dir(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A task directory holding one dead job; yields (path, job id)."""
    path = str(tmp_path / "jobs")
    tasks = TaskQueue(path)

    @tasks.task
    def fail(x: Any) -> None:
        raise RuntimeError(f"no {x}")

    job = fail.delay("<b>bold</b>")
    worker = tasks.start(concurrency=1)
    until(lambda: job.state == "dead", 20, "the job to die")
    worker.stop()
    yield path, job.id
    tasks.close()


def _csrf(page: str) -> str:
    match = re.search(r'data-csrf="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_a_host_other_than_loopback_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(DiskQueueError, match="--token"):
        Dashboard(str(tmp_path), host="0.0.0.0", port=0)
    out = diskq("dashboard", str(tmp_path), "--host", "0.0.0.0", "--port", "0")
    assert out.returncode == 1 and "--token" in out.stderr


def test_every_request_needs_the_token(dead_dir: tuple[str, str]) -> None:
    path, job_id = dead_dir
    # bound to every address; the test reaches it through loopback
    with Dashboard(path, host="0.0.0.0", port=0, token="s3cret") as dash:
        base = f"http://127.0.0.1:{dash.port}/"
        for url in (base, base + "api/overview", base + "api/dead", base + "static/dashboard.js",
                    base + f"api/job/{job_id}", base + "?token=wrong"):
            status, body, _ = http_call(url)
            assert status == 401, url
            assert job_id not in json.dumps(body)
        status, _, _ = http_call(base + "api/overview", headers={"X-Diskq-Token": "s3cret"})
        assert status == 200
        status, _, _ = http_call(base + "api/overview", headers={"Authorization": "Bearer s3cret"})
        assert status == 200
        # the login: ?token= sets a cookie and sends the browser to the bare address
        status, _, headers = http_call(base + "?token=s3cret")
        assert status in (302, 303) and "?" not in headers["Location"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        status, page, _ = http_call(base, headers={"Cookie": cookie})
        assert status == 200 and "data-csrf" in page
        # a POST with the CSRF token but without the token changes nothing
        status, _, _ = http_call(base + "api/dead/retry", method="POST", body={"id": job_id},
                             headers={"X-CSRF-Token": _csrf(page)})
        assert status == 401
        status, _, _ = http_call(base + "api/dead/retry", method="POST", body={"id": job_id},
                             headers={"X-CSRF-Token": _csrf(page), "Cookie": cookie})
        assert status == 200
        assert http_call(base + f"api/job/{job_id}", headers={"Cookie": cookie})[1]["state"] == \
            "pending"


def test_a_post_without_the_csrf_token_changes_nothing(dead_dir: tuple[str, str]) -> None:
    path, job_id = dead_dir
    with Dashboard(path, port=0) as dash:
        base = dash.url
        _, page, _ = http_call(base)
        for headers in ({}, {"X-CSRF-Token": "guess"}):
            for action in ("retry", "purge"):
                status, body, _ = http_call(base + f"api/dead/{action}", method="POST",
                                        body={"id": job_id}, headers=headers)
                assert status == 403 and "CSRF" in body["error"]
        # a GET never changes anything either
        assert http_call(base + "api/dead/purge")[0] == 405
        _, dead, _ = http_call(base + "api/dead")
        assert [j["id"] for j in dead["jobs"]] == [job_id]
        status, body, _ = http_call(base + "api/dead/purge", method="POST", body={"id": job_id},
                                headers={"X-CSRF-Token": _csrf(page)})
        assert (status, body) == (200, {"purge": 1})
        assert http_call(base + "api/dead")[1]["jobs"] == []


def test_read_only_hides_and_refuses_changes(dead_dir: tuple[str, str]) -> None:
    path, job_id = dead_dir
    with Dashboard(path, port=0, read_only=True) as dash:
        _, page, _ = http_call(dash.url)
        assert "dead-retry-all" not in page and 'data-read-only="1"' in page
        status, body, _ = http_call(dash.url + "api/dead/retry", method="POST", body={"id": job_id},
                                headers={"X-CSRF-Token": _csrf(page)})
        assert status == 403 and "read-only" in body["error"]
        assert http_call(dash.url + "api/dead")[1]["jobs"][0]["id"] == job_id


def test_a_loopback_dashboard_refuses_other_host_names(tmp_path: Path) -> None:
    """A page elsewhere that rebinds its DNS name to 127.0.0.1 gets nothing."""
    with Dashboard(str(tmp_path), port=0) as dash:
        status, body, _ = http_call(dash.url + "api/overview", headers={"Host": "evil.example"})
        assert status == 403 and "loopback" in body["error"]
        assert http_call(dash.url + "api/overview", headers={"Host": "localhost"})[0] == 200


def test_values_are_escaped_and_errors_are_json(dead_dir: tuple[str, str]) -> None:
    path, job_id = dead_dir
    with Dashboard(path, port=0) as dash:
        status, _, headers = http_call(dash.url)
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        status, job, headers = http_call(dash.url + f"api/job/{job_id}")
        assert headers["Content-Type"] == "application/json"
        assert job["args"] == ["<b>bold</b>"] and "RuntimeError" in job["error"]["traceback"]
        status, body, _ = http_call(dash.url + "api/job/nope")
        assert status == 404 and "no job nope" in body["error"]
        status, body, _ = http_call(dash.url + "api/jobs?queue=default&after=zz:1")
        assert status == 400
        status, body, _ = http_call(dash.url + "api/dead?task=fail&error=no%20%3Cb")
        assert [j["id"] for j in body["jobs"]] == [job_id]
        assert http_call(dash.url + "api/dead?error=nothing-like-it")[1]["jobs"] == []


def test_plain_structures_show_counts_and_never_unpickle(tmp_path: Path) -> None:
    plain = Queue(str(tmp_path / "q"))
    plain.put({"n": "<i>1</i>"})
    plain.put(2)
    pickled = Queue(str(tmp_path / "p"), codec="pickle")
    pickled.put({"x": 1})
    try:
        with Dashboard(str(tmp_path / "q"), port=0) as dash:
            _, over, _ = http_call(dash.url + "api/overview")
            assert over["kind"] == "plain" and over["workers"] == []
            (name, counts), = over["samples"][-1]["queues"].items()
            assert counts["depth"] == 2 and counts["in_flight"] == 0
            items = http_call(dash.url + "api/items?queue=" + name)[1]["items"]
            assert items == [{"n": "<i>1</i>"}, 2]
        with Dashboard(str(tmp_path / "p"), port=0) as dash:
            _, over, _ = http_call(dash.url + "api/overview")
            (name, _counts), = over["samples"][-1]["queues"].items()
            (item,) = http_call(dash.url + "api/items?queue=" + name)[1]["items"]
            assert "not msgpack" in item
    finally:
        plain.close()
        pickled.close()


def test_diskq_dashboard_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with TaskQueue(str(tmp_path / "jobs")) as tasks:
        tasks.enqueue("resize", "a.png")
    proc = subprocess.Popen([sys.executable, "-m", "diskqueue.cli", "dashboard",
                             str(tmp_path / "jobs"), "--port", "0", "--read-only"],
                            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "(read-only)" in line, proc.stderr.read() if proc.stderr else ""
        url = line.split(" on ")[1].split()[0]
        assert http_call(url + "api/overview")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_the_extra_the_command_says_what_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['flask'] = None; from diskqueue.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "dashboard", str(tmp_path)],
                         env=child_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "pip install 'diskqueue[web]'" in out.stderr
