"""docs/metrics.md lists every metric the endpoints serve, and its queries use only
those: checked against real scrapes of a worker and of a plain queue directory."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import diskqueue as dq  # noqa: E402
from diskqueue.metrics.server import serve_directory  # noqa: E402

try:
    from .test_tasks_support import until
except ImportError:
    from test_tasks_support import until

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
SUFFIXES = ("_bucket", "_count", "_sum")


def served_names(url: str) -> set[str]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    names = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name.endswith("_created"):  # the client's own series, named in the text
                continue
            if name.startswith("diskqueue_"):
                for suffix in SUFFIXES:
                    if family.type in ("counter", "histogram") and name.endswith(suffix):
                        name = name[: -len(suffix)]
                names.add(name)
    return names


@pytest.mark.timeout(60)
def test_the_metrics_page_lists_what_is_served(tmp_path):
    tasks = dq.TaskQueue(tmp_path / "jobs")

    @tasks.task(retries=0)
    def job(n):
        if n < 0:
            raise ValueError(n)

    job.delay(1)
    job.delay(-1)
    job.apply((2,), delay=3600)
    worker = tasks.start(concurrency=1, metrics_port=0)
    until(lambda: tasks.stats()["default"]["done"] == 1 and tasks.stats()["default"]["dead"],
          30, "both jobs to finish")
    names = served_names(worker.metrics.url)
    worker.stop()
    tasks.close()
    q = dq.Queue(tmp_path / "q")
    q.enqueue(1)
    with serve_directory(str(tmp_path / "q"), 0) as server:
        names |= served_names(server.url)
    q.close()

    text = DOC.read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `(diskqueue_\w+)` \|", text, re.M))
    assert table == names
    queries = "\n".join(re.findall(r"^```promql\n(.*?)^```", text, re.M | re.S))
    used = {re.sub(r"_(bucket|count|sum)$", "", n)
            for n in re.findall(r"\b(diskqueue_\w+)", queries)}
    assert used and used <= names, used - names
