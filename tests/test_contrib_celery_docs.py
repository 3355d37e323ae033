"""docs/scale-out.md's Celery commands, run as written against the page's own app."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("celery")

from celery_support import REPO, wait_for  # noqa: E402
from faults import child_env  # noqa: E402
from test_docs import FENCE  # noqa: E402

PAGE = REPO / "docs" / "scale-out.md"


def celery_section() -> tuple[list[str], list[str]]:
    """The Celery section's python and sh blocks (before the Redis move)."""
    text = PAGE.read_text()
    section = text.split("## Celery", 1)[1].split("### The move", 1)[0]
    found = [(m.group("lang"), m.group("body")) for m in FENCE.finditer(section)]
    return ([body for lang, body in found if lang == "python"],
            [body for lang, body in found if lang == "sh"])


def test_the_pages_worker_purge_and_inspect_commands_run(tmp_path: Path) -> None:
    python, shell = celery_section()
    (tmp_path / "shop.py").write_text(python[0])
    commands = [re.sub(r"\s+#.*$", "", line).strip()
                for line in shell[1].splitlines() if line.strip()]
    assert [c.split()[3] for c in commands] == ["worker", "purge", "inspect"]
    env = child_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"

    def argv(command: str) -> list[str]:
        return [sys.executable, "-m", *shlex.split(command)]

    sent = subprocess.run([sys.executable, "-c", "from shop import *\n" + python[1]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    purge = subprocess.run(argv(commands[1]), cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60)
    assert purge.returncode == 0 and "Purged 3 messages" in purge.stdout, purge.stderr
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(argv(commands[0]), cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
        try:
            pings: list[subprocess.CompletedProcess[str]] = []

            def answered() -> bool:  # the worker needs a moment before it listens
                pings.append(subprocess.run(argv(commands[2]), cwd=tmp_path, env=env,
                                            capture_output=True, text=True, timeout=60))
                return pings[-1].returncode == 0 and "pong" in pings[-1].stdout

            wait_for(answered, 90, "a pong from the worker")
        finally:
            worker.terminate()
            worker.wait(timeout=60)
