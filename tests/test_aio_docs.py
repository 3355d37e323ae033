"""The FastAPI recipe runs: its python blocks in order (as tests/test_docs.py runs every
page of docs/), and its shell commands as a user would type them: uvicorn serving the app
on 127.0.0.1 with ``diskq-worker`` running the jobs in another process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults import child_env
from test_docs import ROOT, blocks

RECIPE = ROOT / "docs" / "recipes" / "fastapi.md"


def test_the_recipe_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    assert "recipes/fastapi.md" in nav and "asyncio.md" in nav


def test_fastapi_recipe_python_blocks_run(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISKQ_WORKER", raising=False)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for number, (line, source) in enumerate(blocks(RECIPE, "python"), start=1):
        try:
            exec(compile("\n" * (line - 1) + source, "docs/recipes/fastapi.md", "exec"),
                 namespace)
        except Exception:
            pytest.fail(f"python block {number} (line {line}) failed:\n"
                        f"{traceback.format_exc()}", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(prefix: str) -> list[str]:
    """The recipe's shell line that starts with ``prefix``, as argv (env assignments
    left out: the test sets them)."""
    for _, body in blocks(RECIPE, "sh"):
        for line in body.splitlines():
            words = line.split()
            while words and "=" in words[0]:
                words = words[1:]
            if words and words[0] == prefix and line.strip() != "uvicorn main:app":
                return words
    raise AssertionError(f"no `{prefix}` command in the recipe")


def test_fastapi_recipe_under_uvicorn_with_diskq_worker(tmp_path: Path) -> None:
    if shutil.which("diskq-worker", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("diskq-worker is not installed next to this Python")
    (tmp_path / "main.py").write_text(blocks(RECIPE, "python")[0][1])
    env = child_env({"PYTHONPATH": str(tmp_path), "DISKQ_WORKER": "external"})
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    port = _free_port()
    server_argv = [sys.executable, "-m", *_command("uvicorn")[:1], "main:app",
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    worker_argv = _command("diskq-worker")
    assert worker_argv == ["diskq-worker", "--app", "main:tasks", "--create", "--concurrency",
                           "4"]
    server = subprocess.Popen(server_argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    worker = subprocess.Popen(worker_argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/emails/none", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        ids = [httpx.post(f"{base}/emails", params={"to": f"u{i}@example.com",
                                                     "subject": "hi"}).json()["id"]
               for i in range(5)]
        for i, job_id in enumerate(ids):
            got = httpx.get(f"{base}/emails/{job_id}", params={"wait": 20},
                            timeout=30).json()
            assert got["state"] == "success", got
            assert got["result"] == f"sent 'hi' to u{i}@example.com"
        # a long poll whose client goes away leaves the event in the queue
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{base}/events/next", params={"wait": 5}, timeout=0.3)
        httpx.post(f"{base}/events", json={"n": 1})
        assert httpx.get(f"{base}/events/next", timeout=10).json()["event"] == {"n": 1}
    finally:
        for proc in (server, worker):
            proc.terminate()
        for proc in (server, worker):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert worker.returncode == 0, worker.stderr.read().decode()  # type: ignore[union-attr]
