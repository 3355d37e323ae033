"""The dashboard in a real browser: headless Chromium, driven by Selenium, against a
directory that a real ``diskq-worker`` holds; the dashboard is the real ``diskq
dashboard`` command, a client of that worker.

One browser, one worker and one dashboard serve every test of the module, in order.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faults import REPO_ROOT, child_env
from test_tasks_support import diskq, until

from diskqueue import TaskQueue

pytest.importorskip("flask")
pytest.importorskip("waitress")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver)")

SCRIPT_ARG = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
SCREENSHOT = Path(REPO_ROOT) / "docs" / "img" / "dashboard.png"

APP = '''
import os
import time
from diskqueue import TaskQueue
from diskqueue.tasks import set_progress

tasks = TaskQueue(os.environ["WEB_TEST_DIR"])

@tasks.task(queue="default")
def add(a, b):
    set_progress({"done": 1})
    return a + b

@tasks.task(queue="mail")
def flaky(text):
    # dies until the test writes the file its fix needs, then succeeds
    if not os.path.exists(os.environ["WEB_TEST_DIR"] + ".fixed"):
        raise ValueError("no fix yet for " + text)
    return "sent " + text

@tasks.task(queue="default")
def slow(name):
    # runs until the test lets it finish, so the page can show it running
    while not os.path.exists(os.environ["WEB_TEST_DIR"] + ".release"):
        time.sleep(0.05)
    return name

@tasks.periodic(every=86400, queue="default")
def nightly():
    return "ok"
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stats(path: str) -> Any:
    out = diskq("stats", path, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Site:
    """The running worker, dashboard and browser, and what the tests need of them."""

    def __init__(self, path: str, url: str, driver: Any, worker: subprocess.Popen[bytes],
                 jobs: dict[str, str]) -> None:
        self.path, self.url, self.driver, self.worker, self.jobs = path, url, driver, worker, jobs

    def text(self, selector: str) -> Any:
        """The text of the first element matching, or None: read in one step, as the
        page redraws its tables on every poll (an element found could be gone)."""
        return self.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e && e.textContent",
            selector)

    def cell(self, queue: str, field: str) -> Any:
        return self.text(f'#queues tr[data-queue="{queue}"] td[data-field="{field}"]')

    def wait_css(self, selector: str, timeout: float = 20) -> Any:
        return until(lambda: self.driver.find_elements(By.CSS_SELECTOR, selector), timeout,
                     selector)[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("web")
    (root / "webapp.py").write_text(textwrap.dedent(APP))
    path = str(root / "jobs")
    env = child_env({"WEB_TEST_DIR": path, "PYTHONPATH": str(root)})
    enqueue = textwrap.dedent('''
        import json, webapp
        ids = {"add": webapp.add.delay(2, 3).id}
        for i in range(9):
            webapp.add.delay(i, i)
        ids["later"] = webapp.add.apply(args=(1, 1), delay=3600).id
        ids["script"] = webapp.flaky.delay(''' + repr(SCRIPT_ARG) + ''').id
        ids["flaky"] = webapp.flaky.delay("hello").id
        webapp.tasks.close()
        print(json.dumps(ids))
    ''')
    made = subprocess.run([sys.executable, "-c", enqueue], env=env, capture_output=True,
                          text=True, timeout=60, cwd=str(root))
    assert made.returncode == 0, made.stderr
    jobs = json.loads(made.stdout)
    worker = subprocess.Popen([sys.executable, "-m", "diskqueue.cli.worker", path,
                               "--app", "webapp:tasks", "--concurrency", "3"],
                              env=env, cwd=str(root), stderr=subprocess.DEVNULL)
    port = _free_port()
    dashboard = None
    driver = None
    try:
        until(lambda: all(q["depth"] == 0 and q["in_flight"] == 0 for q in
                          _stats(path).values())
              and sum(q["dead"] for q in _stats(path).values()) == 2,
              60, "the worker to run every job")
        # a relative path, as a user types it: the page (and the screenshot) shows it
        dashboard = subprocess.Popen([sys.executable, "-m", "diskqueue.cli", "dashboard", "jobs",
                                      "--port", str(port)], env=child_env(), cwd=str(root),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert dashboard.stdout is not None
        line = dashboard.stdout.readline().decode()
        assert f"127.0.0.1:{port}" in line, dashboard.stderr.read() if dashboard.stderr else line
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1400,1800"):
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=DRIVER))
        driver.get(f"http://127.0.0.1:{port}/")
        yield Site(path, f"http://127.0.0.1:{port}/", driver, worker, jobs)
    finally:
        Path(path + ".release").write_text("")
        if driver is not None:
            driver.quit()
        for proc in (dashboard, worker):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)


def test_numbers_are_those_of_diskq_stats(site: Site) -> None:
    stats = _stats(site.path)
    site.wait_css('#queues tr[data-queue="mail"]')
    for queue, counts in stats.items():
        for field in ("depth", "scheduled", "in_flight", "dead", "done", "failed"):
            assert site.cell(queue, field) == str(counts[field]), (queue, field)
    assert stats["default"]["done"] == 10 and stats["default"]["scheduled"] == 1
    assert stats["mail"]["dead"] == 2
    charts = site.driver.find_elements(By.CSS_SELECTOR, "#charts .chart svg polyline")
    assert charts, "no chart drawn"


def test_workers_and_periodic_tasks_are_listed(site: Site) -> None:
    row = f'#workers tr[data-worker^="{site.worker.pid}."]'
    site.wait_css(row)
    assert site.text(row + ' td[data-field="concurrency"]') == "3"
    site.wait_css('#periodic tr[data-task="nightly"]')
    assert "every 86400 s" in site.text('#periodic tr[data-task="nightly"]')
    next_run = site.text('#periodic tr[data-task="nightly"] td[data-field="next"]')
    assert next_run not in ("", "-")


def test_a_script_in_an_argument_is_text(site: Site) -> None:
    row = site.wait_css(f'#dead tr[data-job="{site.jobs["script"]}"]')
    assert json.dumps(SCRIPT_ARG) in row.find_element(By.CSS_SELECTOR, "td.args").text
    assert SCRIPT_ARG in row.find_element(By.CSS_SELECTOR, "td.error").text
    assert not site.driver.find_elements(By.CSS_SELECTOR, "#dead script, #dead img")
    row.find_element(By.CSS_SELECTOR, "a.job-link").click()
    tb = site.wait_css("#job-traceback")
    until(lambda: "Traceback" in tb.text, 10, "the traceback")
    assert "ValueError: no fix yet for " + SCRIPT_ARG in tb.text
    assert not site.driver.find_elements(By.CSS_SELECTOR, "#job script, #job img")
    assert site.driver.execute_script("return window.pwned") is None


def test_look_up_and_browse_jobs(site: Site) -> None:
    driver = site.driver
    box = driver.find_element(By.ID, "lookup-id")
    box.clear()
    box.send_keys(site.jobs["add"])
    driver.find_element(By.CSS_SELECTOR, "#lookup button").click()
    until(lambda: driver.find_element(By.ID, "job-id").text == site.jobs["add"], 10, "lookup")
    fields = {e.get_attribute("data-field"): e.text
              for e in driver.find_elements(By.CSS_SELECTOR, "#job-fields dd")}
    assert fields["state"] == "success" and fields["result"] == "5"
    assert fields["arguments"] == "[2,3]" and fields["attempts"] == "1"
    assert fields["progress"] == '{"done":1}'
    driver.find_element(By.CSS_SELECTOR, '#browse-state option[value="scheduled"]').click()
    driver.find_element(By.CSS_SELECTOR, "#browse button").click()
    row = site.wait_css(f'#jobs tr[data-job="{site.jobs["later"]}"]')
    assert "add(1, 1)" in row.text and "scheduled" in row.text


def test_retry_a_dead_job_with_its_button(site: Site) -> None:
    Path(site.path + ".fixed").write_text("")
    row = site.wait_css(f'#dead tr[data-job="{site.jobs["flaky"]}"]')
    row.find_element(By.CSS_SELECTOR, "button.retry").click()

    def state() -> Any:
        with urllib.request.urlopen(site.url + "api/job/" + site.jobs["flaky"]) as r:
            return json.load(r)
    job = until(lambda: (lambda j: j if j["state"] == "success" else None)(state()), 30,
                "the retried job to succeed")
    assert job["result"] == "sent hello" and job["attempts"] == 2
    until(lambda: not site.driver.find_elements(
        By.CSS_SELECTOR, f'#dead tr[data-job="{site.jobs["flaky"]}"]'), 10, "the row to go")
    until(lambda: site.cell("mail", "dead") == "1", 10, "the dead count to drop")
    assert _stats(site.path)["mail"]["dead"] == 1


def test_workers_show_what_they_run(site: Site) -> None:
    tasks = TaskQueue(site.path)  # a client of the worker, as any producer
    try:
        job = tasks.enqueue("slow", "report.pdf")
    finally:
        tasks.close()
    row = f'#workers tr[data-worker^="{site.worker.pid}."] td[data-field="running"]'
    until(lambda: f"slow {job.id}" in (site.text(row) or ""), 30, "the running job")
    until(lambda: site.cell("default", "in_flight") == "1", 20, "in-flight 1")


def test_screenshot(site: Site, tmp_path: Path) -> None:
    """The picture in docs/dashboard.md (rewritten there with DISKQ_UPDATE_SCREENSHOT=1)."""
    site.driver.execute_script("window.scrollTo(0, 0)")
    target = SCREENSHOT if os.environ.get("DISKQ_UPDATE_SCREENSHOT") else tmp_path / "d.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    assert site.driver.save_screenshot(str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
